// Package netfab owns container networking on a node: the bridge, veth pairs
// and address management, the VXLAN overlay between nodes, nftables NAT for
// published ports and DNS service discovery.
//
// It is not wired yet: containers run either in their own network namespace
// with only a loopback interface or in the host's network namespace
// (network: host).
package netfab
