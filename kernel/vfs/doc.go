// Package vfs is the kernel's DB-backed file system for sites: file
// contents are blobs named by their SHA-256 in a JetStream object store
// bucket, deploys are events carrying manifests, and a projection serves
// the live deploy of each site from SQLite.
package vfs
