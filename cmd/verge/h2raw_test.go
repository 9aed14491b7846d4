package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2raw is an HTTP/2 client at the frame level, for sending what a normal
// client never would: floods, resets, oversized header blocks. A reader
// goroutine drains the server's frames, answers SETTINGS, and notes PING
// acks, responses and the end of the connection (GOAWAY or close). The
// client grants 1 GiB of flow-control credit up front and never more.
type h2raw struct {
	conn net.Conn
	wmu  sync.Mutex // guards fr's writes and enc
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32         // next client stream id, under wmu
	acks sync.WaitGroup // SETTINGS acks not yet written

	pings    chan [8]byte  // PING acks
	statuses chan string   // :status of each response HEADERS
	away     chan struct{} // closed when a GOAWAY came
	closed   chan struct{} // closed when the server's side ended
	goaway   atomic.Int32  // GOAWAY error code + 1, 0 when none came
	closeErr error         // why reading stopped; set before closed closes
}

// dialH2 opens a TLS connection negotiating h2 and sends the preface.
func dialH2(t testing.TB, addr, sni string, roots *x509.CertPool) *h2raw {
	t.Helper()
	c, err := dialH2Err(addr, sni, roots)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func dialH2Err(addr, sni string, roots *x509.CertPool) (*h2raw, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		return nil, err
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		return nil, fmt.Errorf("negotiated %q, not h2", p)
	}
	return newH2Raw(conn)
}

func newH2Raw(conn net.Conn) (*h2raw, error) {
	c := &h2raw{conn: conn, next: 1, pings: make(chan [8]byte, 64), statuses: make(chan string, 4096), away: make(chan struct{}), closed: make(chan struct{})}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		conn.Close()
		return nil, err
	}
	c.fr.WriteWindowUpdate(0, 1<<30)
	go c.read()
	return c, nil
}

func (c *h2raw) read() {
	defer close(c.closed)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.closeErr = err
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				// Never block reading on the writer: it may be stuck on a
				// server that stopped reading.
				c.acks.Add(1)
				go func() {
					defer c.acks.Done()
					c.wmu.Lock()
					c.fr.WriteSettingsAck()
					c.wmu.Unlock()
				}()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				select {
				case c.pings <- f.Data:
				default:
				}
			}
		case *http2.MetaHeadersFrame:
			select {
			case c.statuses <- f.PseudoValue("status"):
			default:
			}
		case *http2.GoAwayFrame:
			if c.goaway.Swap(int32(f.ErrCode)+1) == 0 {
				close(c.away)
			}
		}
	}
}

// isClosed reports whether the server ended the connection.
func (c *h2raw) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// waitClosed waits up to d for the server to end the connection.
func (c *h2raw) waitClosed(d time.Duration) bool {
	select {
	case <-c.closed:
		return true
	case <-time.After(d):
		return false
	}
}

// how says how the connection ended, for messages.
func (c *h2raw) how() string {
	if !c.isClosed() {
		return "open"
	}
	if g := c.goaway.Load(); g > 0 {
		return fmt.Sprintf("GOAWAY %v, then %v", http2.ErrCode(g-1), c.closeErr)
	}
	return fmt.Sprintf("closed (%v)", c.closeErr)
}

// block encodes a request's header block: the pseudo-headers, then fields.
func (c *h2raw) block(host, path string, fields ...string) []byte {
	c.hbuf.Reset()
	c.enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	c.enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "https"})
	c.enc.WriteField(hpack.HeaderField{Name: ":authority", Value: host})
	c.enc.WriteField(hpack.HeaderField{Name: ":path", Value: path})
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: true})
	}
	return append([]byte(nil), c.hbuf.Bytes()...)
}

// request sends one GET as HEADERS (+CONTINUATION frames of at most 16 KiB)
// and returns its stream id.
func (c *h2raw) request(host, path string, fields ...string) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	id := c.next
	c.next += 2
	blk := c.block(host, path, fields...)
	const max = 16 << 10
	first := blk
	if len(first) > max {
		first = blk[:max]
	}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: true, EndHeaders: len(blk) <= max})
	for rest := blk[len(first):]; err == nil && len(rest) > 0; {
		n := min(len(rest), max)
		err = c.fr.WriteContinuation(id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	return id, err
}

// resetBurst sends n requests each followed at once by RST_STREAM(CANCEL),
// the rapid-reset pattern (CVE-2023-44487), then a PING, and waits for its
// ack: the server has then read every frame of the burst. It returns false
// when the server sent GOAWAY or closed the connection instead.
func (c *h2raw) resetBurst(host, path string, n int) (bool, error) {
	c.wmu.Lock()
	var err error
	for i := 0; i < n && err == nil; i++ {
		id := c.next
		c.next += 2
		blk := c.block(host, path)
		err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
		if err == nil {
			err = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
	}
	var token [8]byte
	token[0] = byte(c.next)
	token[1] = byte(c.next >> 8)
	token[2] = byte(c.next >> 16)
	if err == nil {
		err = c.fr.WritePing(false, token)
	}
	c.wmu.Unlock()
	if err != nil {
		if c.waitClosed(10 * time.Second) {
			return false, nil
		}
		return false, err
	}
	for {
		select {
		case got := <-c.pings:
			if got == token {
				return true, nil
			}
		case <-c.away:
			return false, nil
		case <-c.closed:
			return false, nil
		case <-time.After(30 * time.Second):
			return false, errors.New("no PING ack within 30s")
		}
	}
}

// ping sends a PING and waits for its ack, and for the SETTINGS acks that
// were due before it; false when the connection ended.
func (c *h2raw) ping() bool {
	token := [8]byte{'v', 'e', 'r', 'g', 'e'}
	c.wmu.Lock()
	err := c.fr.WritePing(false, token)
	c.wmu.Unlock()
	if err != nil {
		return false
	}
	for {
		select {
		case got := <-c.pings:
			if got == token {
				c.acks.Wait()
				return true
			}
		case <-c.closed:
			return false
		case <-time.After(30 * time.Second):
			return false
		}
	}
}

// status waits for the next response's :status ("" when the connection
// ended first).
func (c *h2raw) status() string {
	select {
	case s := <-c.statuses:
		return s
	case <-c.closed:
		select {
		case s := <-c.statuses:
			return s
		default:
		}
		return ""
	case <-time.After(30 * time.Second):
		return "timeout"
	}
}

// writeRaw writes frames under the write lock.
func (c *h2raw) writeRaw(fn func(fr *http2.Framer) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return fn(c.fr)
}
