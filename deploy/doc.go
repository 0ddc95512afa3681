// Package deploy holds no code: its tests check the deployment files in
// this directory and the repository's Dockerfile against the tlsrelay binary
// and a running relay.
package deploy
