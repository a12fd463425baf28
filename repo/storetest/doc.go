// Package storetest holds what tests of stores and of their users share: a
// conformance suite every repo.Store must pass, a wrapper that records
// operations so tests can assert on what crossed the store, a wrapper that
// injects faults, and the connection to the MinIO server `make test` starts.
package storetest
