// The two systems under test behind one small interface: a putter that writes one key and
// returns when the write is acknowledged, and a node status query (who leads?).
//
// Distri: one RESP connection per putter, SET key value, acknowledged by +OK (with the
// default --fsync always that means durable on a majority). etcd: the official Go client
// (go.etcd.io/etcd/client/v3), Put; putters share a few clients (gRPC multiplexes many
// concurrent requests on one HTTP/2 connection, as etcd's own benchmark tool does). Either
// way each putter has exactly one request outstanding, so "N in flight" means N putters
// for both systems.

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// putter writes one key; one goroutine owns it.
type putter interface {
	Put(key, value []byte, timeout time.Duration) error
	Close()
}

// ---------------------------------------------------------------------------
// Distri
// ---------------------------------------------------------------------------

type distriPutter struct {
	addr string
	conn *respConn
}

func (p *distriPutter) Put(key, value []byte, timeout time.Duration) error {
	if p.conn == nil {
		c, err := dialResp(p.addr, timeout)
		if err != nil {
			return err
		}
		p.conn = c
	}
	err := p.conn.SetOK(time.Now().Add(timeout), key, value)
	var reply *ErrorReply
	if err != nil && !errors.As(err, &reply) {
		// A transport error or timeout leaves the stream in an unknown state: reconnect.
		p.conn.Close()
		p.conn = nil
	}
	return err
}

func (p *distriPutter) Close() {
	if p.conn != nil {
		p.conn.Close()
	}
}

// ---------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------

// etcdPool hands out clients so that putters share them round-robin.
type etcdPool struct {
	mu      sync.Mutex
	clients map[string][]*clientv3.Client // endpoint -> its clients
	next    map[string]int
	perEP   int
}

func newEtcdPool(perEndpoint int) *etcdPool {
	return &etcdPool{clients: map[string][]*clientv3.Client{}, next: map[string]int{},
		perEP: perEndpoint}
}

func newEtcdClient(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// get returns the next client for endpoint, creating up to perEP of them.
func (p *etcdPool) get(endpoint string) (*clientv3.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.clients[endpoint]
	if len(list) < p.perEP {
		c, err := newEtcdClient(endpoint)
		if err != nil {
			return nil, err
		}
		p.clients[endpoint] = append(list, c)
		return c, nil
	}
	c := list[p.next[endpoint]%len(list)]
	p.next[endpoint]++
	return c, nil
}

func (p *etcdPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, list := range p.clients {
		for _, c := range list {
			c.Close()
		}
	}
	p.clients = map[string][]*clientv3.Client{}
}

type etcdPutter struct{ c *clientv3.Client }

func (p *etcdPutter) Put(key, value []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := p.c.Put(ctx, string(key), string(value))
	return err
}

func (p *etcdPutter) Close() {} // the pool owns the client

// ---------------------------------------------------------------------------
// Node status: who leads
// ---------------------------------------------------------------------------

// nodeInfo is what "loadgen info" prints per endpoint and what --target leader uses.
type nodeInfo struct {
	Endpoint     string   `json:"endpoint"`
	OK           bool     `json:"ok"`
	Error        string   `json:"error,omitempty"`
	Single       bool     `json:"single,omitempty"` // a Distri without CLUSTER.* (one node)
	Role         string   `json:"role"`
	NodeID       string   `json:"node_id"`
	LeaderID     string   `json:"leader_id"`
	Term         int64    `json:"term"`
	CommitIndex  int64    `json:"commit_index"`
	AppliedIndex int64    `json:"applied_index"`
	Voters       []string `json:"voters,omitempty"`
	VoterCount   int      `json:"voter_count"` // len(voters), or the number if it is one
	Learners     []string `json:"learners,omitempty"`
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		var n int64
		fmt.Sscan(x, &n)
		return n
	}
	return 0
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func distriInfo(endpoint string, timeout time.Duration) nodeInfo {
	info := nodeInfo{Endpoint: endpoint}
	c, err := dialResp(endpoint, timeout)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	defer c.Close()
	v, err := c.Do(time.Now().Add(timeout), []byte("CLUSTER.INFO"))
	var reply *ErrorReply
	if errors.As(err, &reply) && strings.Contains(strings.ToLower(reply.Msg), "unknown command") {
		// A build without the cluster: one node, which is its own leader.
		info.OK, info.Single, info.Role, info.VoterCount = true, true, "leader", 1
		return info
	}
	if err != nil {
		info.Error = err.Error()
		return info
	}
	m, err := asMap(v)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.OK = true
	info.Role = strings.ToLower(fmt.Sprint(m["role"]))
	info.NodeID = fmt.Sprint(m["node_id"])
	info.LeaderID = fmt.Sprint(m["leader_id"])
	info.Term = toInt(m["term"])
	info.CommitIndex = toInt(m["commit_index"])
	info.AppliedIndex = toInt(m["applied_index"])
	info.Voters = toStrings(m["voters"])
	info.VoterCount = len(info.Voters)
	if n, ok := m["voters"].(int64); ok {
		info.VoterCount = int(n)
	}
	info.Learners = toStrings(m["learners"])
	return info
}

func etcdInfo(endpoint string, timeout time.Duration) nodeInfo {
	info := nodeInfo{Endpoint: endpoint}
	c, err := newEtcdClient(endpoint)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := c.Status(ctx, "http://"+endpoint)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.OK = true
	info.NodeID = fmt.Sprintf("%x", st.Header.MemberId)
	info.LeaderID = fmt.Sprintf("%x", st.Leader)
	info.Role = "follower"
	if st.Leader == st.Header.MemberId {
		info.Role = "leader"
	}
	info.Term = int64(st.RaftTerm)
	info.CommitIndex = int64(st.RaftIndex)
	info.AppliedIndex = int64(st.RaftAppliedIndex)
	return info
}

func nodeInfos(system string, endpoints []string, timeout time.Duration) []nodeInfo {
	out := make([]nodeInfo, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Add(1)
		go func(i int, ep string) {
			defer wg.Done()
			if system == "etcd" {
				out[i] = etcdInfo(ep, timeout)
			} else {
				out[i] = distriInfo(ep, timeout)
			}
		}(i, ep)
	}
	wg.Wait()
	return out
}

// findLeader returns the endpoint of the node that says it leads.
func findLeader(system string, endpoints []string) (string, error) {
	for _, info := range nodeInfos(system, endpoints, 2*time.Second) {
		if info.OK && info.Role == "leader" {
			return info.Endpoint, nil
		}
	}
	return "", fmt.Errorf("no %s node among %v says it is the leader", system, endpoints)
}
