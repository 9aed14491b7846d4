package storage

import (
	"bytes"
	"errors"
	"hash/crc32"
	"net/http"
	"reflect"
	"testing"
	"time"
)

func sampleObject() *Object {
	return &Object{
		Key:    "example.com/a/b?c=d",
		Status: 200,
		Header: http.Header{
			"Content-Type":  {"text/plain"},
			"Etag":          {`"abc"`},
			"Cache-Control": {"max-age=60", "stale-while-revalidate=30"},
			"X-Empty":       {""},
		},
		Body:          []byte("hello, disk"),
		RequestTime:   time.Date(2026, 11, 27, 13, 0, 0, 123, time.UTC),
		ResponseTime:  time.Date(2026, 11, 27, 13, 0, 1, 456789, time.UTC),
		Lifetime:      60 * time.Second,
		InitialAge:    3 * time.Second,
		SWR:           30 * time.Second,
		SIE:           -1,
		NoCache:       true,
		VaryGen:       7,
		SurrogateKeys: []string{"tag1", "tag2"},
		HitStatus:     []string{"upstream; hit", "edge1; hit"},
	}
}

// metaEqual compares what a header block carries (not Body, not disk).
func metaEqual(a, b *Object) bool {
	x, y := *a, *b
	x.Body, y.Body, x.disk, y.disk = nil, nil, nil, nil
	return reflect.DeepEqual(x, y)
}

func TestMetaRoundTrip(t *testing.T) {
	cases := map[string]*Object{
		"response":             sampleObject(),
		"marker":               {Key: "k", VaryNames: []string{"Accept-Encoding"}, VaryGen: 3},
		"marker with no names": {Key: "k", VaryNames: []string{}, VaryGen: 1},
		"zero times":           {Key: "k", Status: 204},
		"old time":             {Key: "k", Status: 200, ResponseTime: time.Date(1901, 1, 1, 0, 0, 0, 999999999, time.UTC)},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			b := encodeMeta(nil, o)
			got, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if !metaEqual(o, got) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, o)
			}
			if got.IsMarker() != o.IsMarker() {
				t.Fatalf("IsMarker %v, want %v", got.IsMarker(), o.IsMarker())
			}
		})
	}
}

// fileBytes builds a whole object file in memory.
func fileBytes(o *Object, writeID uint64) []byte {
	meta := encodeMeta(nil, o)
	ft := footer{writeID: writeID, bodyLen: int64(len(o.Body)), metaLen: int64(len(meta)),
		metaCRC: crc32.Checksum(meta, castagnoli), bodyCRC: crc32.Checksum(o.Body, castagnoli)}
	var foot [footerSize]byte
	ft.encode(foot[:])
	out := append([]byte{}, o.Body...)
	out = append(out, meta...)
	return append(out, foot[:]...)
}

func TestParseTailChecks(t *testing.T) {
	good := fileBytes(sampleObject(), 42)
	if ft, meta, need, err := parseTail(good, int64(len(good))); err != nil || need != 0 || ft.writeID != 42 || meta.Key != sampleObject().Key {
		t.Fatalf("good file: %v need=%d id=%d", err, need, ft.writeID)
	}
	// a short tail asks for more
	if _, _, need, err := parseTail(good[len(good)-footerSize:], int64(len(good))); err != nil || need != len(good)-len(sampleObject().Body) {
		t.Fatalf("short tail: need %d err %v", need, err)
	}
	mutate := map[string]func([]byte) ([]byte, int64){
		"truncated": func(b []byte) ([]byte, int64) { return b[:len(b)-1], int64(len(b) - 1) },
		"longer":    func(b []byte) ([]byte, int64) { return b, int64(len(b) + 1) },
		"header block bit": func(b []byte) ([]byte, int64) {
			b[len(sampleObject().Body)+3] ^= 1
			return b, int64(len(b))
		},
		"footer bit": func(b []byte) ([]byte, int64) { b[len(b)-20] ^= 0x80; return b, int64(len(b)) },
		"magic":      func(b []byte) ([]byte, int64) { b[len(b)-footerSize] = 'X'; return b, int64(len(b)) },
		"zeroes":     func(b []byte) ([]byte, int64) { clear(b); return b, int64(len(b)) },
	}
	for name, m := range mutate {
		t.Run(name, func(t *testing.T) {
			b, size := m(bytes.Clone(good))
			_, _, _, err := parseTail(b, size)
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("err = %v, want errCorrupt", err)
			}
		})
	}
}

// decodeCrashers are inputs that once broke (or could break) the decoder;
// fuzzing keeps adding to testdata/fuzz, and notable ones are kept here.
var decodeCrashers = [][]byte{
	nil,
	{metaVersion},
	{metaVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // huge key length
	{metaVersion, 1, 'k', 200, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},      // huge header count
	{metaVersion, 1, 'k', 200, 1, 0, 0, 0, 1, 1, 'a', 1},                      // value count past the end
	{metaVersion, 1, 'k', 0xe8, 0x07},                                         // status 1000
	{2, 1, 'k'},                                                               // unknown version
	{metaVersion, 1, 'k', 200, 1, 8},                                          // unknown flag
	{metaVersion, 1, 'k', 200, 1, 0, 0, 1, 1, 'v'},                            // vary names without the marker flag
}

func TestDecodeMetaCrashers(t *testing.T) {
	for i, b := range decodeCrashers {
		if o, err := decodeMeta(b); err == nil {
			t.Errorf("case %d: decoded %+v, want an error", i, o)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(nil, sampleObject()))
	f.Add(encodeMeta(nil, &Object{Key: "k", VaryNames: []string{"A"}}))
	for _, b := range decodeCrashers {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		// whatever decodes re-encodes to something that decodes the same
		o2, err := decodeMeta(encodeMeta(nil, o))
		if err != nil || !metaEqual(o, o2) {
			t.Fatalf("re-encode: %v\n%+v\n%+v", err, o, o2)
		}
	})
}

func FuzzParseTail(f *testing.F) {
	f.Add(fileBytes(sampleObject(), 1))
	f.Add(fileBytes(&Object{Key: "k"}, 9))
	f.Fuzz(func(t *testing.T, b []byte) {
		ft, meta, need, err := parseTail(b, int64(len(b)))
		if err != nil {
			return
		}
		if need > 0 {
			t.Fatalf("need %d with the whole file given", need)
		}
		if ft.fileSize() != int64(len(b)) || meta == nil {
			t.Fatalf("accepted a file of %d bytes as %d", len(b), ft.fileSize())
		}
	})
}
