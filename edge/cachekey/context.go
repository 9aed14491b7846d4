package cachekey

import "context"

type ctxKey struct{}

// NewContext returns a copy of ctx carrying key, the cache key of the request
// being filled. The edge sets it on upstream requests so a parent selector can
// hash on the same key the cache uses.
func NewContext(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, ctxKey{}, key)
}

// FromContext returns the cache key set by NewContext.
func FromContext(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(ctxKey{}).(string)
	return k, ok
}
