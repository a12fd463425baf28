package agent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Fleet mode speaks JSON over HTTP with bearer tokens. These helpers are
// shared by the agent daemon and the coordinator (package scheduler).

// APIError is an error answer from a cairn daemon.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// ErrUnreachable wraps failures to reach a daemon at all (connection
// refused, timeout), as opposed to an answer that says no.
var ErrUnreachable = errors.New("unreachable")

// MaxRequestBody caps JSON request bodies a daemon reads.
const MaxRequestBody = 16 << 20

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes {"error": message} with status.
func WriteError(w http.ResponseWriter, status int, format string, a ...any) {
	WriteJSON(w, status, map[string]string{"error": fmt.Sprintf(format, a...)})
}

// ReadJSON decodes a request body into v, refusing unknown fields, bodies
// over MaxRequestBody and trailing data. On error it has written the 4xx.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			WriteError(w, http.StatusRequestEntityTooLarge, "request body over %d bytes", MaxRequestBody)
		} else {
			WriteError(w, http.StatusBadRequest, "malformed JSON request: %v", err)
		}
		return false
	}
	if dec.More() {
		WriteError(w, http.StatusBadRequest, "malformed JSON request: data after the object")
		return false
	}
	return true
}

// TokenOK compares a request's bearer token with want in constant time.
func TokenOK(r *http.Request, want string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Recover turns a panic in a handler into a 500 so a bad request never
// takes a daemon down.
func Recover(log func(string), h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if log != nil {
					log(fmt.Sprintf("panic serving %s %s: %v", r.Method, r.URL.Path, v))
				}
				WriteError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// Client calls a cairn daemon.
type Client struct {
	Base  string // http(s)://host:port
	Token string
	HTTP  *http.Client
}

// NewClient returns a client for base. A non-empty caFile is a PEM file of
// certificates to trust (for self-signed coordinator or agent certificates).
func NewClient(base, token, caFile string, timeout time.Duration) (*Client, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// Do sends in (if not nil) as JSON and decodes the answer into out (if not
// nil). Error answers become *APIError with the daemon's message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.Raw(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Raw sends a request and returns a successful response with its body
// unread; error answers become *APIError.
func (c *Client) Raw(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w: %v", c.Base, ErrUnreachable, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}
