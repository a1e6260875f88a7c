// Package freeport picks loopback ports for tests that start real servers.
package freeport

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Pick returns n distinct ports that were free for TCP and UDP a moment ago.
// They are drawn below the kernel's ephemeral range where it leaves room:
// ports from a ":0" bind come out of that range, as do the source ports of
// every outgoing connection of the test processes running in parallel, so
// one of those could take the port between this call and the server's bind
// (a closed ephemeral port is often handed out again at once). A port is
// never returned twice by one call.
func Pick(n int) ([]int, error) {
	lo, hi := 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				hi = v
			}
		}
	}
	seen := map[int]bool{}
	var ports []int
	for attempt := 0; len(ports) < n; attempt++ {
		if attempt > 100*n {
			return nil, fmt.Errorf("picking %d free ports: found only %d", n, len(ports))
		}
		port := 0
		if hi-lo >= 1000 {
			port = lo + mrand.IntN(hi-lo)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		port = l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if seen[port] {
			continue
		}
		seen[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}
