package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one timed round: how many operations, how long, and each
// operation's latency.
type sample struct {
	ops     int
	elapsed time.Duration
	lat     []time.Duration
}

func (s sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ops) / s.elapsed.Seconds()
}

// closedLoop runs op on callers goroutines, each starting its next
// operation when the last returns, until d has passed.
func closedLoop(ctx context.Context, callers int, d time.Duration, op func(i int) error) (sample, error) {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		lat     []time.Duration
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	deadline := start.Add(d)
	for c := 0; c < callers; c++ {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(deadline) {
					break
				}
				if err := op(int(next.Add(1) - 1)); err != nil {
					errOnce.Do(func() { first = err })
					break
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	s := sample{ops: len(lat), elapsed: time.Since(start), lat: lat}
	if first == nil {
		first = ctx.Err()
	}
	return s, first
}

// asyncLoop keeps up to window operations in flight from one caller,
// as an async publisher does, until d has passed. send starts operation
// i and returns a function that waits for its outcome. The round ends
// when the last operation has completed.
func asyncLoop(ctx context.Context, window int, d time.Duration, send func(i int) (func() error, error)) (sample, error) {
	type inflight struct {
		sent time.Time
		wait func() error
	}
	q := make(chan inflight, window)
	done := make(chan struct{})
	var lat []time.Duration
	var waitErr error
	go func() {
		defer close(done)
		for f := range q {
			if err := f.wait(); err != nil && waitErr == nil {
				waitErr = err
			}
			lat = append(lat, time.Since(f.sent))
		}
	}()
	start := time.Now()
	var sendErr error
	for i := 0; ctx.Err() == nil && time.Since(start) < d; i++ {
		t := time.Now()
		wait, err := send(i)
		if err != nil {
			sendErr = err
			break
		}
		q <- inflight{t, wait}
	}
	close(q)
	<-done
	s := sample{ops: len(lat), elapsed: time.Since(start), lat: lat}
	for _, err := range []error{sendErr, waitErr, ctx.Err()} {
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

// percentile returns the p-th percentile (0..100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// latencies merges the rounds' latencies, sorted.
func latencies(samples []sample) []time.Duration {
	var all []time.Duration
	for _, s := range samples {
		all = append(all, s.lat...)
	}
	slices.Sort(all)
	return all
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
