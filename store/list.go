package store

import "fmt"

// ListOrder is the order of a task listing.
type ListOrder string

// The listing orders. Ids are UUIDv7 unless a caller chose its own, so id
// order is creation order.
const (
	// ListOldest lists tasks oldest first; the default.
	ListOldest ListOrder = "oldest"
	// ListNewest lists tasks newest first.
	ListNewest ListOrder = "newest"
)

// Filter is the selection p lists.
func (p ListParams) Filter() TaskFilter {
	return TaskFilter{Queue: p.Queue, Kind: p.Kind, States: p.States, CreatedSince: p.CreatedSince, CreatedUntil: p.CreatedUntil}
}

// Newest validates p and reports whether it lists newest first. Errors
// name the field, as TaskFilter.Check does, or "order".
func (p ListParams) Newest() (bool, error) {
	if err := p.Filter().Check(); err != nil {
		return false, err
	}
	switch p.Order {
	case "", ListOldest:
		return false, nil
	case ListNewest:
		return true, nil
	}
	return false, &ValidationError{Index: -1, Field: "order", Message: fmt.Sprintf("%q is not an order (%s or %s)", p.Order, ListOldest, ListNewest)}
}
