"""hvsim's hypervisor: machine memory, VMs and the four reclamation techniques."""
