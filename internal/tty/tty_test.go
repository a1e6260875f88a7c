package tty

import (
	"os"
	"testing"
)

func TestDevNullIsNotATerminal(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s is not a character device here; the test proves nothing", os.DevNull)
	}
	if IsTerminalFile(f) {
		t.Fatalf("%s reported as a terminal", os.DevNull)
	}
}

func TestPipeAndFileAreNotTerminals(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminalFile(r) || IsTerminalFile(w) {
		t.Fatal("a pipe reported as a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminalFile(f) || IsTerminalFile(nil) {
		t.Fatal("a regular file (or nil) reported as a terminal")
	}
}

func TestPTYIsATerminal(t *testing.T) {
	control, term, err := OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer control.Close()
	defer term.Close()
	if !IsTerminalFile(term) {
		t.Fatal("the terminal side of a pty is not reported as a terminal")
	}
	if _, err := term.WriteString("hello\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := control.Read(buf)
	if err != nil || n == 0 {
		t.Fatalf("reading what the terminal side wrote: %d, %v", n, err)
	}
}
