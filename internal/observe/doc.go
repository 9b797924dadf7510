// Package observe keeps what the platform shows users about their
// functions. Today that is logs: it collects every line instances write,
// stores them in batches, and wakes followers (`shoal logs -f`).
package observe
