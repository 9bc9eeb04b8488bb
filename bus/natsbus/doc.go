// Package natsbus carries the bus over NATS. It starts an embedded
// nats-server with JetStream (in-process connections only, unless a listen
// address is given) or dials an external server or cluster, and offers the
// few operations services need: JSON publish, request/reply with typed
// errors, queue-group handlers, and JetStream key-value buckets and streams.
//
// Services use the same Conn whether the server is embedded or remote, which
// is what makes the all-in-one hub run the very code path of the split
// deployment.
package natsbus
