from .cli import main

main(prog_name="kube-ovn-gc")
