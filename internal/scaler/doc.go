// Package scaler decides how many instances a deployment should have: how
// many to start for the invocations waiting for a slot, and which idle
// instances to stop after their keep-alive while keeping minInstances. It
// is pure: the invoker gives it a snapshot and the time, and carries out
// what it returns.
package scaler
