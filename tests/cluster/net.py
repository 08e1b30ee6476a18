"""The cluster test's network: one network namespace per host (`ip netns`), each with one veth
whose other end is a port of a bridge that lives in a namespace of its own, so nothing of the
machine's own network (its namespace, links, addresses, routes) is touched.

    hosts = Network(HOSTS); hosts.create(); ...; hosts.destroy()

Every name begins with the network's prefix (PREFIX, `twc-`, unless the constructor is given
another, with a /24 of its own: the scale-out benchmark's `twb-` on 10.78.0.0/24, so the two
never meet): create() first removes what a run killed before its end left behind (namespaces
of that prefix, and any process still running in one), and destroy() removes everything
(idempotent; also run at exit).  The caller stops its own processes first
(destroy() kills whatever it left in the namespaces).  Netns(name).command(argv, user, cwd) is the hook tests/stack.py
runs every process through.
"""
import atexit
import ctypes
import os
import signal
import subprocess

PREFIX = "twc-"  # the cluster test's; Network(prefix=...) takes another
BRIDGE = "br0"
NETWORK = "10.77.0"  # a /24 of the test's own (Network(network=...) takes another)
CIDR = NETWORK + ".0/24"
CLONE_NEWNET = 0x40000000


def ip(*args, check=True):
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class Netns:
    """A host's namespace as tests/stack.py's namespace hook: its processes run in it (as user,
    when one is given)."""

    def __init__(self, name):
        self.name = name

    def command(self, argv, user, cwd):
        del cwd  # the process keeps the directory Popen gives it
        return ["ip", "netns", "exec", self.name] + (["runuser", "-u", user, "--"] if user
                                                     else []) + list(argv)


class Network:
    """hosts: {name: last byte of its address}; prefix: of every namespace's name; network:
    the first three bytes of the hosts' /24."""

    def __init__(self, hosts, prefix=PREFIX, network=NETWORK):
        self.hosts = dict(hosts)
        self.prefix = prefix
        self.network = network
        self.cidr = network + ".0/24"
        self.switch = prefix + "switch"  # the namespace of the bridge
        self.created = False
        self.home = None  # the caller's own namespace, while it is inside another

    def address(self, host):
        return f"{self.network}.{self.hosts[host]}"

    def namespace(self, host):
        return self.prefix + host

    def netns(self, host):
        return Netns(self.namespace(host))

    def leftovers(self):
        return [line.split()[0] for line in ip("netns", "list").splitlines()
                if line.split() and line.split()[0].startswith(self.prefix)]

    def remove_leftovers(self):
        """Kill what still runs in a namespace of ours (a run killed before its end left it
        there), then delete the namespace."""
        for name in self.leftovers():
            for pid in ip("netns", "pids", name, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            ip("netns", "del", name, check=False)

    def create(self):
        self.remove_leftovers()
        self.created = True
        atexit.register(self.destroy)
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.switch, "link", "set", BRIDGE, "up")
        for host in self.hosts:
            ns, port = self.namespace(host), f"p-{host}"
            ip("netns", "add", ns)
            ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", self.switch, "link", "set", port, "master", BRIDGE, "up")
            ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        return self

    def link(self, host, up):
        """Set host's only link up or down (cut off the network, or back)."""
        ip("-n", self.namespace(host), "link", "set", "eth0", "up" if up else "down")

    def enter(self, host):
        """Move the calling thread (call it before any other thread starts: threads made later
        inherit it) into host's namespace; leave() goes back."""
        libc = ctypes.CDLL(None, use_errno=True)
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.namespace(host)}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(target)

    def leave(self):
        if self.home is None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(self.home, CLONE_NEWNET)
        os.close(self.home)
        self.home = None

    def destroy(self):
        if not self.created:
            return
        self.created = False
        self.leave()
        self.remove_leftovers()
