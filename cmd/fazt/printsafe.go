package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// safe returns s fit for a terminal: the characters that could move the
// cursor, change colours, retitle the window, hide text or reorder it
// are shown as visible escapes instead of being sent raw. Those are the
// C0 controls (a newline reads \n, a tab \t, a carriage return \r, ESC
// \x1b), DEL (\x7f), the C1 controls U+0080 to U+009F (\u009b), the
// line and paragraph separators U+2028 and U+2029, and the bidirectional
// formatting characters U+061C, U+200E, U+200F, U+202A to U+202E and
// U+2066 to U+2069 (\u202e); a byte that is not UTF-8 reads \xff. Other
// text, accented letters and emoji included, prints as it is. A
// backslash is left alone: the escapes are for the eye, and --json
// prints the data exactly.
//
// Every command prints what it got from the server through safe (or
// safeCells) when it prints text; --json output is JSON, already
// escaped.
func safe(s string) string {
	i := unsafeIndex(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+w])
		}
		i += w
	}
	return b.String()
}

// safeBytes is safe for bytes, such as an event's JSON data.
func safeBytes(b []byte) string { return safe(string(b)) }

// unsafeIndex is the index of the first byte of s that safe escapes,
// or -1.
func unsafeIndex(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return i
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 || unsafeRune(r) {
			return i
		}
		i += w
	}
	return -1
}

// unsafeRune reports the non-ASCII characters safe escapes.
func unsafeRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1 controls
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, // ALM, LRM, RLM
		r >= 0x202a && r <= 0x202e, // LRE, RLE, PDF, LRO, RLO
		r >= 0x2066 && r <= 0x2069, // LRI, RLI, FSI, PDI
		r == 0x2028, r == 0x2029:   // line and paragraph separators
		return true
	}
	return false
}

// jsonSafe returns JSON text fit for a terminal and still the same
// JSON: the characters safe escapes become \uXXXX escapes, which JSON
// reads as the same characters (they can only be inside strings, where
// a JSON encoder may have left DEL, C1 and bidirectional formatting
// characters raw). Newlines, tabs and carriage returns stay: between
// tokens they are JSON's whitespace, and inside strings JSON has them
// escaped already. A byte that is not UTF-8 becomes \ufffd.
func jsonSafe(b []byte) string {
	s := string(b)
	i := unsafeIndex(s)
	if i < 0 {
		return s
	}
	var out strings.Builder
	out.Grow(len(s) + 8)
	out.WriteString(s[:i])
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			out.WriteRune(r)
		case r == utf8.RuneError && w == 1:
			out.WriteString(`\ufffd`)
		case r < 0x20 || r == 0x7f || unsafeRune(r):
			fmt.Fprintf(&out, `\u%04x`, r)
		default:
			out.WriteString(s[i : i+w])
		}
		i += w
	}
	return out.String()
}
