package upstream

import "github.com/tlsrelay/tlsrelay/policy"

// SetProviders replaces the providers that new deliveries use (a SIGHUP
// reload: new credentials, TLS policy, hosts). Deliveries in flight finish
// with the provider they started with. Idle connections are closed, and a
// connection parked later under an old policy is never reused: its TLS and
// AUTH were set up under that policy.
func (c *Client) SetProviders(m map[string]*policy.Provider) {
	c.provMu.Lock()
	c.reloaded = m
	c.provMu.Unlock()
	c.pool.drain(false)
}

// provider returns the named provider of the current configuration.
func (c *Client) provider(name string) *policy.Provider {
	c.provMu.RLock()
	defer c.provMu.RUnlock()
	if c.reloaded != nil {
		return c.reloaded[name]
	}
	return c.Providers[name]
}
