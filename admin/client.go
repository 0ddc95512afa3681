package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/tlsrelay/tlsrelay/queue"
)

// ErrNoServer means no relay answers on the control socket.
var ErrNoServer = errors.New("no relay is running on this spool")

// maxAnswer bounds a JSON answer the client reads.
const maxAnswer = 64 << 20

// Client talks to a running relay's control socket. It implements API.
type Client struct {
	path string
	http *http.Client
}

// NewClient is a client of the relay whose spool is spoolDir.
func NewClient(spoolDir string) *Client {
	path := SocketPath(spoolDir)
	return &Client{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Path is the socket the client dials.
func (c *Client) Path() string { return c.path }

// Do sends one request over the socket; a refused or missing socket is
// ErrNoServer.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%w (%s: %v)", ErrNoServer, c.path, op.Err)
		}
		return nil, err
	}
	return resp, nil
}

func (c *Client) request(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://tlsrelay"+path, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// call sends one request and decodes the JSON answer into out; it returns
// the answer's header.
func (c *Client) call(ctx context.Context, method, path string, out any) (http.Header, error) {
	resp, err := c.request(ctx, method, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("relay answered %s", resp.Status)
	}
	return resp.Header, json.Unmarshal(body, out)
}

// Ping reports whether a relay answers (its /healthz: cheap, unlike a list).
func (c *Client) Ping(ctx context.Context) error { return c.stream(ctx, PathHealthz, io.Discard) }

// Ready asks the relay's /readyz whether it is ready, and returns its text
// (the reason, when not); err is for a relay that did not answer.
func (c *Client) Ready(ctx context.Context) (ready bool, text string, err error) {
	resp, err := c.request(ctx, "GET", PathReadyz)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK, strings.TrimSpace(string(body)), nil
}

// Show returns one message, or the dead letter of that ID (dead is true).
func (c *Client) Show(ctx context.Context, id string) (it queue.Item, dead bool, err error) {
	if _, err = c.call(ctx, "GET", queueItem(id), &it); err == nil {
		return it, false, nil
	}
	if _, err2 := c.call(ctx, "GET", deadItem(id), &it); err2 == nil {
		return it, true, nil
	}
	return it, false, err
}

// Retry makes one message due now (id "": every message); it returns how many.
func (c *Client) Retry(ctx context.Context, id string) (int, error) {
	var d struct{ Messages int }
	path := PathRetryAll
	if id != "" {
		path = queueItem(id) + suffixRetry
	}
	_, err := c.call(ctx, "POST", path, &d)
	return d.Messages, err
}

// Delete removes a message without delivery or bounce.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.call(ctx, "DELETE", queueItem(id), &struct{}{})
	return err
}

// Requeue moves a dead letter back into the queue.
func (c *Client) Requeue(ctx context.Context, id string) error {
	_, err := c.call(ctx, "POST", deadItem(id)+suffixRequeue, &struct{}{})
	return err
}

// Flush retries every message and waits up to wait (a duration) until the
// queue is empty.
func (c *Client) Flush(ctx context.Context, wait string) (r FlushResult, err error) {
	_, err = c.call(ctx, "POST", PathFlush+"?wait="+url.QueryEscape(wait), &r)
	return r, err
}

// Close releases nothing: each request has its own connection lifetime.
func (c *Client) Close() error { return nil }

// stream copies the answer to GET path into w, unchanged.
func (c *Client) stream(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.request(ctx, "GET", path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("relay answered %s", resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
