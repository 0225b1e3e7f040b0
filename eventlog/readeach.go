package eventlog

import "context"

// ReadEach calls fn for every entry with sequence greater than after
// that passes f, in log order, until fn returns false or the end of the
// log as it is now, and returns the last sequence examined: the entry fn
// stopped at, or the end (which, with a filter, can be past the last
// entry fn saw). Pass it as after to read on later. Malformed entries
// are passed to fn like events (check Event.Malformed), so a message
// written around the kernel is seen and read past, never an obstacle.
// It reads in pages with Read: use it for small categories, such as the
// kernel's own records, and a Cursor to catch up over many events.
// Errors: Read's.
func (l *Log) ReadEach(ctx context.Context, after uint64, f Filter, fn func(Event) bool) (uint64, error) {
	for {
		p, err := l.Read(ctx, after, readBatch, f)
		for _, e := range p.Events {
			after = e.Seq
			if !fn(e) {
				return after, nil
			}
		}
		if err != nil {
			return after, err
		}
		if len(p.Events) < readBatch {
			return max(after, p.LastSeq), nil
		}
		// A full page: there may be more.
	}
}
