package listen

import "net/http"

// MaxFrameSize is the largest HTTP/2 frame the public listener reads: the
// protocol's default (RFC 9113 section 4.2). Go's server would otherwise
// advertise and accept 1 MiB frames, which lets every connection make the
// server buffer a megabyte per frame, and which h2spec (4.2/3) reports as a
// missing FRAME_SIZE_ERROR for a HEADERS frame over 16 KiB.
const MaxFrameSize = 16 << 10

// HTTP2Config is the HTTP/2 configuration of the public TLS listener; set
// it as http.Server.HTTP2. Fields left zero keep Go's defaults.
func HTTP2Config() *http.HTTP2Config {
	return &http.HTTP2Config{MaxReadFrameSize: MaxFrameSize}
}
