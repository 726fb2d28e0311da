"""hvsim's hypervisor: machine memory, VMs and the four reclamation techniques.

    from hypervisor.host import Host, HostConfig
    host = Host(HostConfig(memory="8GiB"), env=env)       # env: simpy.Environment or None
    vm = host.create_vm("web1", KernelConfig(memory="2GiB"))  # vm.kernel is the guest
    img = host.create_vm_from_image("dump", "mem.raw")   # a raw memory image, no kernel
    host.sysfs.read("/sys/kernel/mm/ksm/pages_sharing")
    host.reclaimed()   # pages saved now by sharing, balloon, compression, swap
    host.counters()    # flat record of host counters (also /sys/kernel/mm/hvsim/*)

Modules: machine (frames), p2m (per-VM map), vm (the guest's PhysicalMemory), sharing
(KSM), compression (zstd cache), swap (host swap), states (ESXi free-memory states),
policy (victim and balloon policies), balloon (controller), host (wiring, sysfs),
bench (throughput against the bare libraries).
"""
