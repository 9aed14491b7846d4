// Package cachekey builds the cache key of a request: the property's host, the
// path and, when the property keys on it, the query string, plus any request
// headers the property adds to the key. The key never depends on headers that
// are not configured, so an unkeyed header cannot poison an entry.
package cachekey
