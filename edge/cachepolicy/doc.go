// Package cachepolicy is Verge's RFC 9111 decision logic, with no I/O: it
// parses Cache-Control and the targeted fields of RFC 9213, decides whether a
// response may be stored and for how long it stays fresh (RFC 9111 section 4.2,
// RFC 5861), computes Age, evaluates request directives, Vary and conditional
// requests. The edge engine asks it questions and does what it answers; every
// function here is deterministic, given the times passed in.
//
// The cache is a shared cache throughout: s-maxage and proxy-revalidate apply,
// private responses are not stored, and a request with Authorization makes a
// response storable only when the response explicitly allows it.
package cachepolicy
