//go:build !linux

package queue

// Sync is fsync(2): not every system has fdatasync(2) (see dataFile).
func (f dataFile) Sync() error { return f.File.Sync() }
