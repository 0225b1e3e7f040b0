package analytics

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// SaltFile is the name of the file, in Config.SaltDir, that holds the
// day's salt. It is the only copy: overwriting it at UTC midnight
// forgets yesterday's salt, so that no one, the operator included, can
// link a visitor's pseudonyms across days.
const SaltFile = "salt"

// saltBytes is the size of a salt.
const saltBytes = 32

// salts hands out the day's salt, making a new one when the UTC day
// changes. The file makes it survive restarts, so that a visitor is not
// counted twice in a day.
type salts struct {
	dir string

	mu   sync.Mutex
	day  string // YYYY-MM-DD (UTC) of salt; "" before the first use
	salt []byte
}

// saltState is the salt file's content.
type saltState struct {
	Day  string `json:"day"`
	Salt string `json:"salt"` // hex
}

func newSalts(dir string) *salts { return &salts{dir: dir} }

// of returns the salt of now's UTC day.
func (s *salts) of(now time.Time) ([]byte, error) {
	day := now.UTC().Format(time.DateOnly)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.day == day {
		return s.salt, nil
	}
	if s.day == "" {
		// First use since start: today's salt may be on disk already.
		st, err := s.load()
		if err != nil {
			return nil, err
		}
		if salt, err := hex.DecodeString(st.Salt); err == nil && st.Day == day && len(salt) == saltBytes {
			s.day, s.salt = day, salt
			return salt, nil
		}
	}
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if err := s.store(saltState{Day: day, Salt: hex.EncodeToString(salt)}); err != nil {
		return nil, err
	}
	s.day, s.salt = day, salt
	return salt, nil
}

// load reads the salt file; a missing or corrupt one reads as empty,
// which only costs a new salt.
func (s *salts) load() (saltState, error) {
	var st saltState
	b, err := os.ReadFile(filepath.Join(s.dir, SaltFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("analytics: read the salt: %w", err)
	}
	_ = json.Unmarshal(b, &st)
	return st, nil
}

// store replaces the salt file atomically: a crash leaves the old salt or
// the new one, never a mix.
func (s *salts) store(st saltState) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("analytics: salt directory: %w", err)
	}
	b, _ := json.Marshal(st)
	f, err := os.CreateTemp(s.dir, SaltFile+".*")
	if err != nil {
		return fmt.Errorf("analytics: write the salt: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, SaltFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("analytics: write the salt: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort
		d.Close()
	}
	return nil
}

// visitorID is the visitor's pseudonym for the day: the first 32 hex
// digits of sha256(salt, site, ip, user agent). The fields are separated
// by a zero byte so that no two different inputs hash alike.
func visitorID(salt []byte, site, ip, userAgent string) string {
	h := sha256.New()
	for i, part := range [][]byte{salt, []byte(site), []byte(ip), []byte(userAgent)} {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
