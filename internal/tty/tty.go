// Package tty answers "is this a person at a terminal?" correctly, and opens
// pseudo-terminals for tests that need to be that person.
//
// A character device is not the same thing as a terminal: /dev/null is a
// character device too, so a command run with </dev/null (cron, CI, a
// service manager) used to be taken for an interactive session and asked
// questions nobody could answer. Only a descriptor that answers the
// terminal ioctl is a terminal.
package tty

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether fd is a terminal (it answers TCGETS).
func IsTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// IsTerminalFile reports whether f is a terminal; a nil file is not.
func IsTerminalFile(f *os.File) bool {
	return f != nil && IsTerminal(f.Fd())
}

// OpenPTY opens a new pseudo-terminal pair: the controlling side (what a
// test reads and types into) and the terminal side (what the program under
// test gets as its stdin, stdout and stderr). Both must be closed.
func OpenPTY() (control, terminal *os.File, err error) {
	control, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	fd := int(control.Fd())
	// Unlock the terminal side, then ask which number it got.
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		control.Close()
		return nil, nil, fmt.Errorf("unlocking the pseudo-terminal: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		control.Close()
		return nil, nil, fmt.Errorf("reading the pseudo-terminal number: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	terminal, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		control.Close()
		return nil, nil, fmt.Errorf("opening %s: %w", name, err)
	}
	return control, terminal, nil
}
