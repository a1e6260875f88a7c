package redact

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestURIHidesPasswordsAndSecretParameters(t *testing.T) {
	cases := []struct{ in, want string }{
		{"mysql://root:s3cret@db:3306/app?worker-count=4", "mysql://root:xxxxx@db:3306/app?worker-count=4"},
		{"mysql://root@db:3306/", "mysql://root@db:3306/"},
		{"mysql://root:@db/", "mysql://root:xxxxx@db/"},
		{"postgres://u:p%40ss%2Fw@h/db?sslmode=require&sslpassword=kp", "postgres://u:xxxxx@h/db?sslmode=require&sslpassword=xxxxx"},
		{"kafka://b:9092/t?sasl-user=a&sasl-password=zz&ssl-key=/etc/k.pem", "kafka://b:9092/t?sasl-user=a&sasl-password=xxxxx&ssl-key=/etc/k.pem"},
		{"s3://bucket/p?access-key=AK&secret-access-key=SK&sas-token=T", "s3://bucket/p?access-key=xxxxx&secret-access-key=xxxxx&sas-token=xxxxx"},
		{"file:///tmp/out", "file:///tmp/out"},
		{"mysql://root:pa ss@%zz/", "mysql://xxxxx(unparseable URI)"},
		{"not a uri with :pass@", "xxxxx(unparseable URI)"},
		{"file://%zz", "file://%zz"},
		{"kafka://%zz/?sasl-password=x", "kafka://xxxxx(unparseable URI)"},
	}
	for _, c := range cases {
		if got := URI(c.in); got != c.want {
			t.Errorf("URI(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTextHidesTheURIAndItsSecretsAnywhere(t *testing.T) {
	uri := "mysql://root:p%40ss@db:3306/?sasl-password=zz9"
	msg := fmt.Sprintf("connecting to %s failed: access denied for password p@ss (p%%40ss) token zz9", uri)
	got := Text(msg, uri)
	for _, leak := range []string{"p@ss", "p%40ss", "zz9"} {
		if strings.Contains(got, leak) {
			t.Fatalf("Text left %q in %q", leak, got)
		}
	}
	if !strings.Contains(got, "mysql://root:xxxxx@db:3306/") {
		t.Fatalf("Text lost the redacted URI: %q", got)
	}
}

func TestTextHidesPasswordPiecesOfAnUnparseableURI(t *testing.T) {
	uri := "mysql://root:pw#x@h/"
	got := Text(`invalid port ":pw" after host`, uri)
	if strings.Contains(got, "pw") {
		t.Fatalf("Text left a piece of the password: %q", got)
	}
}

type numbered struct{ n int }

func (e *numbered) Error() string { return fmt.Sprintf("error %d for user:hunter2", e.n) }

func TestErrorKeepsTheChainButNotTheSecret(t *testing.T) {
	base := &numbered{1045}
	err := Error(fmt.Errorf("open sink: %w", base), "mysql://user:hunter2@h/")
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("secret in %q", err)
	}
	var n *numbered
	if !errors.As(err, &n) || n.n != 1045 {
		t.Fatalf("errors.As lost the driver error: %v", err)
	}
	if Error(nil, "x") != nil {
		t.Fatal("Error(nil) is not nil")
	}
}

func TestURIWithoutSecretsIsUnchanged(t *testing.T) {
	for _, uri := range []string{"datagen://?tables=4&rate=50", "blackhole://", "file:///tmp/x?protocol=csv", "kafka://b:9092/t?protocol=canal-json"} {
		if got := URI(uri); got != uri {
			t.Errorf("URI(%q) = %q", uri, got)
		}
	}
}
