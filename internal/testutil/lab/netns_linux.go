package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// onThread runs f on a fresh goroutine locked to its OS thread, so f may
// switch that thread's network namespace (a namespace is a property of the
// thread, not of the goroutine or the process). Afterwards the thread goes
// back to the namespace it had; if that fails, the goroutine exits still
// locked and the Go runtime terminates the thread rather than let other
// goroutines run in the wrong namespace. The caller's own thread is never
// touched.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Never unlocked: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore the thread's network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// inNetns runs f on a thread in the network namespace ns (see onThread).
// Sockets f opens, and processes it starts, belong to ns for life.
func inNetns(ns netns.NsHandle, f func() error) error {
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return f()
	})
}

// newNetns creates an unnamed network namespace with lo up and returns a
// file descriptor for it, the namespace's only reference.
func newNetns() (netns.NsHandle, error) {
	ns := netns.None()
	err := onThread(func() error {
		var err error
		if ns, err = netns.New(); err != nil {
			return fmt.Errorf("new network namespace: %w", err)
		}
		return withNetlink(func(h *netlink.Handle) error { return setUp(h, "lo") })
	})
	if err != nil {
		if ns.IsOpen() {
			ns.Close()
		}
		return netns.None(), err
	}
	return ns, nil
}

// withNetlink gives f a netlink handle in the calling thread's network
// namespace and closes it afterwards: its sockets would otherwise keep the
// namespace alive.
func withNetlink(f func(h *netlink.Handle) error) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	return f(h)
}

func setUp(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// addBridge creates the bridge named name in the hub namespace and sets it
// up.
func addBridge(hub netns.NsHandle, name string) error {
	return inNetns(hub, func() error {
		return withNetlink(func(h *netlink.Handle) error {
			if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
				return fmt.Errorf("add bridge %s: %w", name, err)
			}
			return setUp(h, name)
		})
	})
}

// addVeth connects node to the bridge: a veth pair whose end hubEnd is a
// port of bridge in hub and whose other end is eth0 in node, with address
// addr and up.
func addVeth(hub netns.NsHandle, bridge, hubEnd string, node netns.NsHandle, addr netip.Prefix) error {
	err := inNetns(hub, func() error {
		return withNetlink(func(h *netlink.Handle) error {
			br, err := h.LinkByName(bridge)
			if err != nil {
				return fmt.Errorf("find bridge %s: %w", bridge, err)
			}
			veth := &netlink.Veth{
				LinkAttrs:     netlink.LinkAttrs{Name: hubEnd, MasterIndex: br.Attrs().Index},
				PeerName:      "eth0",
				PeerNamespace: netlink.NsFd(node),
			}
			if err := h.LinkAdd(veth); err != nil {
				return fmt.Errorf("add veth %s: %w", hubEnd, err)
			}
			return setUp(h, hubEnd)
		})
	})
	if err != nil {
		return err
	}
	return inNetns(node, func() error {
		return withNetlink(func(h *netlink.Handle) error {
			eth0, err := h.LinkByName("eth0")
			if err != nil {
				return fmt.Errorf("find eth0: %w", err)
			}
			ipnet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
			if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: ipnet}); err != nil {
				return fmt.Errorf("add %s to eth0: %w", addr, err)
			}
			return setUp(h, "eth0")
		})
	})
}
