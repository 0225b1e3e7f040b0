package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// openBlob returns a reader over the stored blob sha and its size. It
// reads the object's chunks with direct gets on the bucket's stream,
// as the object store's layout (ADR-20) names them: the object store's
// own Get makes a consumer per object, which costs more than reading a
// small blob. The caller checks the bytes against the hash.
func (s *Service) openBlob(ctx context.Context, sha string) (io.Reader, int64, error) {
	store, err := s.blobs(ctx)
	if err != nil {
		return nil, 0, err
	}
	info, err := store.GetInfo(ctx, sha)
	if err != nil {
		return nil, 0, fmt.Errorf("blob %s: %w", sha, err)
	}
	if info.Deleted || int64(info.Size) < 0 {
		return nil, 0, fmt.Errorf("blob %s: %w", sha, jetstream.ErrObjectNotFound)
	}
	st, err := s.blobStream(ctx)
	if err != nil {
		return nil, 0, err
	}
	return &chunkReader{
		ctx: ctx, st: st, left: int(info.Chunks), next: 1,
		subj: fmt.Sprintf("$O.%s.C.%s", Bucket, info.NUID),
	}, int64(info.Size), nil
}

// readBlob reads the whole blob sha, checked against its hash.
func (s *Service) readBlob(ctx context.Context, sha string) ([]byte, error) {
	r, size, err := s.openBlob(ctx, sha)
	if err != nil {
		return nil, err
	}
	if size > max(s.cfg.MaxBlobBytes, MaxManifestBlobBytes) {
		return nil, fmt.Errorf("blob %s: %d bytes, more than any blob may hold", sha, size)
	}
	b := make([]byte, 0, size)
	b, err = readAll(r, b)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", sha, err)
	}
	if got := Hash(b); got != sha || int64(len(b)) != size {
		return nil, fmt.Errorf("blob %s in the object store holds %d bytes hashing to %s", sha, len(b), got)
	}
	return b, nil
}

// readAll appends r's bytes to b until EOF.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// blobStream is the bucket's stream, opened once.
func (s *Service) blobStream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		return s.stream, nil
	}
	st, err := s.k.Log().ObjectStream(ctx, Bucket)
	if err != nil {
		if errors.Is(err, eventlog.ErrClosed) {
			return nil, fmt.Errorf("%w: the blob store is not open (is the kernel open?)", eventlog.ErrUnavailable)
		}
		return nil, err
	}
	s.stream = st
	return st, nil
}

// chunkReader reads an object's chunks in order, one direct get each.
type chunkReader struct {
	ctx  context.Context
	st   jetstream.Stream
	subj string
	left int    // chunks not read yet
	next uint64 // the sequence to look for the next chunk from
	buf  []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.left == 0 {
			return 0, io.EOF
		}
		m, err := r.st.GetMsg(r.ctx, r.next, jetstream.WithGetMsgSubject(r.subj))
		if err != nil {
			return 0, fmt.Errorf("chunk after sequence %d: %w", r.next, err)
		}
		r.buf, r.next, r.left = m.Data, m.Sequence+1, r.left-1
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
