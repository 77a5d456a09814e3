package lab

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// tableName is the nftables table (family ip) of a node that is cut from
// others; see the package doc.
const tableName = "shoal_lab"

// ipv4Saddr is the offset of the source address in the IPv4 header.
const ipv4Saddr = 12

// pair is an ordered pair of node names: from cannot reach to. A cut is
// stored both ways.
type pair struct{ from, to string }

// Partition cuts every node in a from every node in b, both ways, for TCP,
// UDP and anything else over IP, and adds to the cuts already made. A node
// may not be in both lists.
func (l *Lab) Partition(a, b []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, name := range append(append([]string(nil), a...), b...) {
		if l.lookup(name) == nil {
			return fmt.Errorf("lab: partition: no node %q", name)
		}
	}
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return fmt.Errorf("lab: partition: node %s on both sides", x)
			}
		}
	}
	for _, x := range a {
		for _, y := range b {
			l.cut[pair{x, y}] = true
			l.cut[pair{y, x}] = true
		}
	}
	return l.applyCuts()
}

// Heal removes every cut: all nodes reach each other again.
func (l *Lab) Heal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.cut)
	return l.applyCuts()
}

// applyCuts rewrites every node's table from l.cut; l.mu is held.
func (l *Lab) applyCuts() error {
	var errs []error
	for _, n := range l.nodes {
		var peers []*node
		for _, m := range l.nodes {
			if l.cut[pair{n.Name, m.Name}] {
				peers = append(peers, m)
			}
		}
		if err := setTable(n, peers); err != nil {
			errs = append(errs, fmt.Errorf("lab: partition rules of %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// setTable replaces n's table with one that drops what comes from peers,
// or deletes it if there are none, in one transaction. Adding the table
// before deleting it makes the delete valid whether or not it existed.
//
// Only input is filtered: a cut is stored both ways, so each side drops
// what the other sends, and the sender learns nothing, as across a real
// partition. A drop in output would fail the sender's send with EPERM.
func setTable(n *node, peers []*node) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns)))
	if err != nil {
		return err
	}
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	c.AddTable(table)
	c.DelTable(table)
	if len(peers) > 0 {
		c.AddTable(table)
		input := c.AddChain(&nftables.Chain{
			Name:     "input",
			Table:    table,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  nftables.ChainHookInput,
			Priority: nftables.ChainPriorityFilter,
		})
		for _, p := range peers {
			ip := p.IP.As4()
			c.AddRule(&nftables.Rule{
				Table: table,
				Chain: input,
				Exprs: []expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ipv4Saddr, Len: 4},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip[:]},
					&expr.Verdict{Kind: expr.VerdictDrop},
				},
			})
		}
	}
	return c.Flush()
}
