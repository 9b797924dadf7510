// Package store owns shoal's SQLite database: the schema and its embedded
// migrations, projects and which deployment is current for each, the
// deployments themselves with their function configuration, and the
// projects' log lines. It uses modernc.org/sqlite through database/sql, so
// it needs no cgo. Every method runs one query, or one transaction where a
// change must be atomic.
package store
