package kafka

import (
	"errors"
	"net/url"
	"strings"
)

const redacted = "xxxxx"

// Redact shows a sink URI with its secrets replaced: the sasl-password
// parameter and any password in the user info. A URI that does not parse is
// cut at its query, where the secrets are.
//
// TODO(shared): replace with the shared URI redaction helper once it is on
// main; this one exists because the Kafka sink needed it first.
func Redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		if i := strings.IndexAny(uri, "?@"); i >= 0 {
			return uri[:i] + "?" + redacted
		}
		return uri
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			if name, err := url.QueryUnescape(k); err == nil && isSecretParam(name) {
				parts[i] = k + "=" + redacted
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	return u.String()
}

func isSecretParam(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "password") || strings.Contains(n, "secret") || n == "sasl-password"
}

// redactErr keeps a parse error from repeating the raw URI.
func redactErr(err error, raw, shown string) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(strings.ReplaceAll(ue.Err.Error(), raw, shown))
	}
	return errors.New(strings.ReplaceAll(err.Error(), raw, shown))
}
