package main

// demoConfig is the embedded config of `tlsrelay demo`: the relay on a free
// loopback port, one provider that is the built-in upstream, reached with
// required STARTTLS, verified against the demo's own CA, with AUTH PLAIN.
const demoConfig = `# tlsrelay demo: generated at run time
listen:
  addr: 127.0.0.1:0
  hostname: tlsrelay.demo
queue:
  dir: %q
  retry: {initial: 1s, max: 10s, factor: 2, jitter: 0.2}
providers:
  demo-upstream:
    host: 127.0.0.1
    port: %d
    tls:
      mode: starttls
      server_name: localhost
      ca_file: %q
      min_version: "1.2"
    auth:
      mechanism: plain
      username_env: DEMO_USER
      password_env: DEMO_PASSWORD
default: [demo-upstream]
log: {format: text, level: info}
`

// demoEnv holds the demo's credentials; the real environment is not read.
type demoEnv map[string]string

func (e demoEnv) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }
