// Package redact hides secrets in connection URIs wherever one is shown:
// API responses, ctl output, logs, metrics labels and error messages. Every
// connector and every place that prints a source or sink URI uses it, so
// "which parameters are secret" is decided once.
package redact

import (
	"net/url"
	"strings"
)

// Mask replaces a secret.
const Mask = "xxxxx"

// secretWords mark a query parameter as secret when its name contains one
// of them (compared without case, '-' and '_'): password, sasl-password,
// sslpassword, secret-access-key, sas-token, api-key and so on.
var secretWords = []string{"password", "passwd", "pwd", "secret", "token", "credential", "apikey", "accesskey", "privatekey"}

// IsSecretParam reports whether a query parameter holds a secret. File
// paths such as ssl-key or ssl-ca are not secrets: they are kept.
func IsSecretParam(name string) bool {
	n := strings.NewReplacer("-", "", "_", "", ".", "").Replace(strings.ToLower(name))
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// URI returns uri with the password of its user info and the value of
// every secret query parameter replaced by Mask. A URI that does not parse
// keeps only its scheme, unless it has neither user info nor a secret
// parameter: where its secrets are cannot be known.
func URI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		if !strings.Contains(uri, "@") && !hasSecretParam(uri) {
			return uri // no user info and no secret parameter: nothing to hide
		}
		if i := strings.Index(uri, "://"); i > 0 && !strings.ContainsAny(uri[:i], "@:/?#") {
			return uri[:i] + "://" + Mask + "(unparseable URI)"
		}
		return Mask + "(unparseable URI)"
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mask)
			changed = true
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || IsSecretParam(name) {
				parts[i] = k + "=" + Mask
				changed = true
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if !changed {
		// Nothing secret: the URI as written (url.URL would re-render
		// "datagen://?x" as "datagen:?x").
		return uri
	}
	s := u.String()
	// url.URL escapes the mask's characters in no case, but keep the form
	// readable if the user info ever gets escaped.
	return strings.Replace(s, url.QueryEscape(Mask), Mask, -1)
}

// hasSecretParam looks for a secret parameter name in a URI that does not
// parse.
func hasSecretParam(uri string) bool {
	_, q, ok := strings.Cut(uri, "?")
	if !ok {
		return false
	}
	for _, p := range strings.Split(q, "&") {
		k, _, _ := strings.Cut(p, "=")
		if IsSecretParam(k) {
			return true
		}
	}
	return false
}

// Secrets are the secret values a URI carries (its password and every
// secret parameter's value), raw and as they appear escaped in the URI.
func Secrets(uri string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	u, err := url.Parse(uri)
	if err != nil {
		// Best effort for a URI that does not parse (often because of a '#',
		// '?' or '/' in the password): whatever sits between "user:" and the
		// last '@', and its pieces, since the parser's own message may
		// quote one of them.
		rest := uri
		if i := strings.Index(rest, "://"); i >= 0 {
			rest = rest[i+3:]
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				add(pw)
				for _, piece := range strings.FieldsFunc(pw, func(r rune) bool { return strings.ContainsRune("#?/@:", r) }) {
					add(piece)
				}
			}
		}
		return out
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
			add(url.QueryEscape(p))
			add(url.PathEscape(p))
		}
	}
	for _, p := range strings.Split(u.RawQuery, "&") {
		k, v, _ := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil || !IsSecretParam(name) {
			continue
		}
		add(v)
		if dv, err := url.QueryUnescape(v); err == nil {
			add(dv)
		}
	}
	return out
}

// Text hides, in any text (a driver's error message, a log line), every
// occurrence of the given URIs and of the secrets they carry. Every
// occurrence is replaced, however short the secret: a mangled message is
// better than a leaked password.
func Text(s string, uris ...string) string {
	for _, uri := range uris {
		if uri == "" {
			continue
		}
		s = strings.ReplaceAll(s, uri, URI(uri))
		secrets := Secrets(uri)
		// Longest first, so that a secret containing another is hidden
		// whole.
		for i := 1; i < len(secrets); i++ {
			for j := i; j > 0 && len(secrets[j]) > len(secrets[j-1]); j-- {
				secrets[j], secrets[j-1] = secrets[j-1], secrets[j]
			}
		}
		for _, sec := range secrets {
			if sec == Mask {
				continue
			}
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	return s
}

// Error wraps err so that its message passes through Text for the URIs;
// errors.Is and errors.As still reach the original.
func Error(err error, uris ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := Text(msg, uris...)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
