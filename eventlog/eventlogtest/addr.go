package eventlogtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// given are the ports FreeAddr handed out in this process: never twice.
var given sync.Map

// FreeAddr returns a loopback address ("127.0.0.1:PORT") free now, for
// a listener a test starts, stops and starts again on the same port (a
// cluster node's routes). Its port is below Linux's ephemeral range
// (32768 and up), so while the node is down the port is not taken by
// an outgoing connection of another test, as a port the kernel handed
// out for ":0" can be. It never returns one address twice in a process.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if _, dup := given.LoadOrStore(addr, true); dup {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	tb.Fatal("no free loopback port in 20000-31999")
	return ""
}
