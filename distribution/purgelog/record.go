package purgelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/vergecdn/verge/edge"
)

// On disk a log is a header followed by records:
//
//	header: "VRGPLOG1"
//	record: length uint32 BE | crc32c(payload) uint32 BE | payload
//	payload: uvarint seq | kind byte | flags byte | uvarint len(value) | value
//
// A record is written with one write call; a crash can leave only the last
// one short or with a bad checksum, and Open drops it.

const (
	magic      = "VRGPLOG1"
	recHeader  = 8                   // length + checksum
	maxPayload = 10 + 2 + 10 + 8<<10 // seq, kind, flags, value length, value (edge bounds values to 8KiB)
	flagSoft   = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var kindCodes = map[edge.PurgeKind]byte{
	edge.PurgeURL: 1, edge.PurgePrefix: 2, edge.PurgeTag: 3, edge.PurgeHost: 4, edge.PurgeAll: 5,
}

var codeKinds = [...]edge.PurgeKind{1: edge.PurgeURL, 2: edge.PurgePrefix, 3: edge.PurgeTag, 4: edge.PurgeHost, 5: edge.PurgeAll}

// appendPayload appends p's canonical encoding: what is stored and hashed.
func appendPayload(b []byte, p edge.Purge) []byte {
	b = binary.AppendUvarint(b, p.Seq)
	var flags byte
	if p.Soft {
		flags |= flagSoft
	}
	b = append(b, kindCodes[p.Kind], flags)
	b = binary.AppendUvarint(b, uint64(len(p.Value)))
	return append(b, p.Value...)
}

// appendRecord appends p as a framed record.
func appendRecord(b []byte, p edge.Purge) []byte {
	start := len(b)
	b = append(b, make([]byte, recHeader)...)
	b = appendPayload(b, p)
	payload := b[start+recHeader:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

var errShort = errors.New("short record")

// decodeRecord reads the record at the start of b and returns it and its
// framed size. errShort means b ends inside the record.
func decodeRecord(b []byte) (edge.Purge, int, error) {
	if len(b) < recHeader {
		return edge.Purge{}, 0, errShort
	}
	n := int(binary.BigEndian.Uint32(b))
	if n == 0 || n > maxPayload {
		return edge.Purge{}, 0, fmt.Errorf("record length %d out of range", n)
	}
	if len(b) < recHeader+n {
		return edge.Purge{}, 0, errShort
	}
	payload := b[recHeader : recHeader+n]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return edge.Purge{}, 0, errors.New("checksum mismatch")
	}
	p, err := decodePayload(payload)
	return p, recHeader + n, err
}

func decodePayload(b []byte) (edge.Purge, error) {
	var p edge.Purge
	seq, n := binary.Uvarint(b)
	if n <= 0 || seq == 0 {
		return p, errors.New("bad sequence number")
	}
	b = b[n:]
	if len(b) < 2 {
		return p, errors.New("record ends before its kind")
	}
	code, flags := b[0], b[1]
	if int(code) >= len(codeKinds) || codeKinds[code] == "" {
		return p, fmt.Errorf("unknown kind code %d", code)
	}
	if flags&^flagSoft != 0 {
		return p, fmt.Errorf("unknown flags %#x", flags)
	}
	b = b[2:]
	vlen, n := binary.Uvarint(b)
	if n <= 0 || vlen != uint64(len(b)-n) {
		return p, errors.New("bad value length")
	}
	p = edge.Purge{Seq: seq, Kind: codeKinds[code], Soft: flags&flagSoft != 0, Value: string(b[n:])}
	if err := p.Validate(); err != nil {
		return p, err
	}
	return p, nil
}
