package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/queue"
)

// controlClient talks to a running relay's control socket.
type controlClient struct {
	path string
	http *http.Client
}

func newControlClient(spoolDir string) *controlClient {
	path := admin.SocketPath(spoolDir)
	return &controlClient{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// errNoServer means no relay answers on the control socket.
var errNoServer = errors.New("no relay is running on this spool")

// do sends one request and decodes the JSON answer into out.
func (c *controlClient) do(ctx context.Context, method, path string, out any) error {
	_, err := c.doHeader(ctx, method, path, out)
	return err
}

// doHeader is do, and returns the answer's header too.
func (c *controlClient) doHeader(ctx context.Context, method, path string, out any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://tlsrelay"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return resp.Header, decodeAnswer(resp, out)
}

// decodeAnswer reads a JSON answer into out, or the error it carries.
func decodeAnswer(resp *http.Response, out any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("relay answered %s", resp.Status)
	}
	return json.Unmarshal(body, out)
}

// send makes one request; a refused or missing socket is errNoServer.
func (c *controlClient) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%w (%s: %v)", errNoServer, c.path, op.Err)
		}
		return nil, err
	}
	return resp, nil
}

// stream copies the JSON answer to GET path into w, unchanged.
func (c *controlClient) stream(ctx context.Context, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://tlsrelay"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
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

// offlineQueue opens the spool directly when no relay runs. Its Deliverer
// is never called: the queue is not Run.
func offlineQueue(dir string, route func(from, rcpt string) []string) (*queue.Queue, error) {
	q, err := queue.Open(queue.Options{Dir: dir, Route: route}, noDeliverer{})
	if err != nil && strings.Contains(err.Error(), "in use by another tlsrelay") {
		return nil, fmt.Errorf("a relay holds %s but does not answer on %s; is it starting or stopping? %w",
			dir, admin.SocketPath(dir), err)
	}
	return q, err
}

type noDeliverer struct{}

func (noDeliverer) Deliver(context.Context, string, *delivery.Message, []string) []delivery.Result {
	panic("tlsrelay: the offline queue delivers nothing")
}
