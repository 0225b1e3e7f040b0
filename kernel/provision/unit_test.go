package provision

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// execStart returns the unit's ExecStart= words as systemd reads them
// back: whitespace splits words, double and single quotes group them,
// backslash escapes the next character (C escapes \n \t \r \xNN), %%
// is %, $$ is $ (systemd.service(5), "Command lines"). A lone % or $ is
// an error: systemd would expand it.
func execStart(t *testing.T, unit []byte) []string {
	t.Helper()
	var line string
	n := 0
	for l := range strings.SplitSeq(string(unit), "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			line = v
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d ExecStart= lines; want 1:\n%s", n, unit)
	}
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == 0 && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			continue
		case quote == 0 && (r == '"' || r == '\''):
			quote, inWord = r, true
			continue
		case quote != 0 && r == quote:
			quote = 0
			continue
		}
		inWord = true
		switch r {
		case '\\':
			i++
			if i == len(rs) {
				t.Fatalf("trailing backslash in %q", line)
			}
			switch rs[i] {
			case 'n':
				cur.WriteByte('\n')
			case 't':
				cur.WriteByte('\t')
			case 'r':
				cur.WriteByte('\r')
			case 'x':
				t.Fatalf("\\x escape in %q: validation let a control character through", line)
			default:
				cur.WriteRune(rs[i])
			}
		case '%', '$':
			if i+1 == len(rs) || rs[i+1] != r {
				t.Fatalf("systemd would expand %q in %q", r, line)
			}
			i++
			cur.WriteRune(r)
		default:
			cur.WriteRune(r)
		}
	}
	if quote != 0 {
		t.Fatalf("unterminated quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// checkUnitShape fails unless the unit has the template's lines, one
// ExecStart= that reads back as the options' arguments, and nothing
// else: no option value can add a line or a directive.
func checkUnitShape(t *testing.T, o Options, unit []byte) {
	t.Helper()
	base, err := Unit(Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, want := strings.Split(string(unit), "\n"), strings.Split(string(base), "\n")
	if len(got) != len(want) {
		t.Fatalf("the unit has %d lines; the template %d:\n%s", len(got), len(want), unit)
	}
	for i := range got {
		if !strings.HasPrefix(got[i], "ExecStart=") && got[i] != want[i] {
			t.Fatalf("line %d is %q; want %q", i+1, got[i], want[i])
		}
	}
	o, _ = o.Validate()
	if words, args := execStart(t, unit), append([]string{BinPath}, o.Args()...); !reflect.DeepEqual(words, args) {
		t.Fatalf("ExecStart reads back as %q; want %q", words, args)
	}
}

func TestUnitHardening(t *testing.T) {
	unit, err := Unit(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Type=notify", "NotifyAccess=main", "DynamicUser=yes", "StateDirectory=fazt",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "Restart=on-failure",
		"WatchdogSec=1min", "ExecStart=" + BinPath + " serve --data " + DataDir, "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
	} {
		if !strings.Contains("\n"+string(unit), "\n"+line+"\n") {
			t.Errorf("the unit lacks the line %q", line)
		}
	}
	// No capability but CAP_NET_BIND_SERVICE, nowhere.
	if n := strings.Count(string(unit), "CAP_"); n != 2 {
		t.Errorf("the unit names %d capabilities; want CAP_NET_BIND_SERVICE twice:\n%s", n, unit)
	}
	// The binary lives where ProtectSystem=strict leaves it writable (for
	// upgrades): inside the state directory.
	if !strings.HasPrefix(BinPath, StateDir+"/") || !strings.HasPrefix(DataDir, StateDir+"/") {
		t.Errorf("BinPath %s and DataDir %s must be inside StateDir %s", BinPath, DataDir, StateDir)
	}
	checkUnitShape(t, Options{}, unit)
}

func TestUnitOptions(t *testing.T) {
	o := Options{Domain: "Bücher.Example.COM.", Email: "ops+fazt@example.com", Backup: []string{"s3://bucket/fazt%20data?region=eu-west-1", "file:///var/lib/fazt/backup"}}
	unit, err := Unit(o)
	if err != nil {
		t.Fatal(err)
	}
	checkUnitShape(t, o, unit)
	v, _ := o.Validate()
	want := []string{"serve", "--data", DataDir, "--domain", "xn--bcher-kva.example.com", "--email", "ops+fazt@example.com",
		"--backup", "s3://bucket/fazt%20data?region=eu-west-1", "--backup", "file:///var/lib/fazt/backup"}
	if !reflect.DeepEqual(v.Args(), want) {
		t.Fatalf("args %q; want %q", v.Args(), want)
	}
	if !strings.Contains(string(unit), `"s3://bucket/fazt%%20data?region=eu-west-1"`) {
		t.Fatalf("the %% of the URL is not doubled:\n%s", unit)
	}
}

// Hostile option values are refused before anything is written: a
// value that could end the ExecStart= line, open a quote or name a
// specifier would let whoever chooses it run commands as root.
func TestOptionsRefuseHostile(t *testing.T) {
	for _, tc := range []struct {
		flag string
		o    Options
		msg  string
	}{
		{"--domain", Options{Domain: "example.com\nExecStartPre=/bin/sh -c id"}, "a line break"},
		{"--domain", Options{Domain: "example.com\r\nUser=root"}, "a line break"},
		{"--domain", Options{Domain: "ex ample.com"}, "a space"},
		{"--domain", Options{Domain: `example.com"`}, "not a domain"},
		{"--domain", Options{Domain: "exa$mple.com"}, "not a domain"},
		{"--domain", Options{Domain: "%h.example.com"}, "not a domain"},
		{"--domain", Options{Domain: "example.com\x00"}, "a control character"},
		{"--domain", Options{Domain: "localhost"}, "public domain"},
		{"--domain", Options{Domain: "-a.example.com"}, "not a domain"},
		{"--domain", Options{Domain: "a\xffb.example.com"}, "not UTF-8"},
		{"--email", Options{Email: "me@example.com\n[Service]"}, "a line break"},
		{"--email", Options{Email: `"a b"@example.com`}, `the character '"'`},
		{"--email", Options{Email: "a'b@example.com"}, `the character '\''`},
		{"--email", Options{Email: "Me <me@example.com>"}, "a space"},
		{"--email", Options{Email: "me@exa%mple.com"}, "not a domain"},
		{"--email", Options{Email: "me$HOME@example.com"}, `the character '$'`},
		{"--email", Options{Email: "me"}, "not an email"},
		{"--backup", Options{Backup: []string{"s3://b/x\nExecStartPre=/bin/sh -c id"}}, "a line break"},
		{"--backup", Options{Backup: []string{"file:///var/lib/fazt/my backups"}}, "a space"},
		{"--backup", Options{Backup: []string{"file:///srv/fazt-backup"}}, "may write only under /var/lib/fazt"},
		{"--backup", Options{Backup: []string{"file:///var/lib/fazt/../../../srv"}}, "may write only under /var/lib/fazt"},
		{"--backup", Options{Backup: []string{"file:///var/lib/fazt/data/jetstream"}}, "may write only under /var/lib/fazt"},
		{"--backup", Options{Backup: []string{"file://other-host/var/lib/fazt/backup"}}, "may write only under /var/lib/fazt"},
		{"--backup", Options{Backup: []string{`s3://b/"x"`}}, `the character '"'`},
		{"--backup", Options{Backup: []string{"s3://b/'x'"}}, `the character '\''`},
		{"--backup", Options{Backup: []string{"s3://b/$HOME"}}, `the character '$'`},
		{"--backup", Options{Backup: []string{`s3://b/x\y`}}, `the character '\\'`},
		{"--backup", Options{Backup: []string{"sftp://me:secret@host/fazt"}}, "holds a password"},
		{"--backup", Options{Backup: []string{"s3://b/x,s3://evil/y"}}, "the character ','"},
		{"--backup", Options{Backup: []string{"relative/path"}}, "not a replica URL"},
		{"--backup", Options{Backup: []string{"s3://b/x", "s3://b/x"}}, "given twice"},
	} {
		_, err := tc.o.Validate()
		if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), tc.flag) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v; want ErrInvalid naming %s and saying %q", tc.o, err, tc.flag, tc.msg)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the password: %v", err)
		}
		if unit, err := Unit(tc.o); err == nil || unit != nil {
			t.Errorf("Unit(%+v) rendered a unit", tc.o)
		}
	}
}

// quoteExecArg is the second line of defence: whatever it is given,
// systemd reads back the same word.
func TestQuoteExecArg(t *testing.T) {
	for _, s := range []string{"plain", "", "a b", `q"uote`, "it's", `back\slash`, "100%", "$HOME", "line\nbreak", "tab\there", "semi;colon"} {
		unit := []byte("ExecStart=" + quoteExecArg(s) + "\n")
		if got := execStart(t, unit); len(got) != 1 || got[0] != s {
			t.Errorf("quoteExecArg(%q) = %s reads back as %q", s, quoteExecArg(s), got)
		}
	}
}

// Whatever options pass Validate, the unit keeps its shape and its
// ExecStart= reads back as the options' arguments.
func FuzzUnit(f *testing.F) {
	f.Add("example.com", "me@example.com", "s3://b/x%20y")
	f.Add("bücher.de", "a.b+c@example.org", "file:///var/lib/fazt/a;b?c=d#e")
	f.Add("example.com\n", "x@y.z\n", "s3://b/\"x")
	f.Fuzz(func(t *testing.T, domain, email, backup string) {
		o := Options{Domain: domain, Email: email, Backup: []string{backup}}
		unit, err := Unit(o)
		if err != nil {
			return
		}
		checkUnitShape(t, o, unit)
	})
}
