// loadgen: the load generator of bench/cluster_compare.py, for Distri (RESP) and etcd (its
// official Go client). Python cannot issue 100k requests/s; this can, on the same two cores
// as the servers. It has three subcommands, each printing JSON on stdout:
//
//	loadgen put   --system distri|etcd --endpoints h:p,... [--target all|leader]
//	              --inflight N --duration 10s [--warmup 2s] [--value-size 100] [--keys 100000]
//	    N workers, each with one request outstanding: write, wait for the acknowledgement,
//	    write the next. Prints throughput and latency percentiles of the measured window.
//	loadgen info  --system distri|etcd --endpoints h:p,...
//	    Each node's view: role, node id, leader id, term, commit/applied index.
//	loadgen probe --system distri|etcd [--endpoints h:p,...] [--interval 10ms]
//	    Failover timing. Reads lines "ENDPOINT T0" from stdin (T0: CLOCK_MONOTONIC in ns,
//	    taken by the caller just before it killed the leader) and writes through ENDPOINT,
//	    a new attempt every --interval, until a write is acknowledged; prints the time from
//	    T0 to that acknowledgement.
//
// Requests only go to the endpoints given (loopback in the benchmark); every loop is
// bounded by a duration or a timeout.

package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen put|info|probe [flags]  (loadgen CMD -h for flags)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "put":
		runPut(os.Args[2:])
	case "info":
		runInfo(os.Args[2:])
	case "probe":
		runProbe(os.Args[2:])
	default:
		usage()
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

func splitEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func checkSystem(system string) {
	if system != "distri" && system != "etcd" {
		fail("--system must be distri or etcd, not %q", system)
	}
}

func printJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail("json: %v", err)
	}
	fmt.Println(string(b))
}

// ---------------------------------------------------------------------------
// put: throughput and latency with N requests in flight
// ---------------------------------------------------------------------------

type putResult struct {
	System       string   `json:"system"`
	Inflight     int      `json:"inflight"`
	Target       string   `json:"target"`
	Endpoints    []string `json:"endpoints"`
	Seconds      float64  `json:"seconds"`
	Ops          int      `json:"ops"`
	Errors       int      `json:"errors"`
	FirstError   string   `json:"first_error,omitempty"`
	OpsPerSec    float64  `json:"ops_per_sec"`
	P50Ms        float64  `json:"p50_ms"`
	P99Ms        float64  `json:"p99_ms"`
	P999Ms       float64  `json:"p999_ms"`
	MaxMs        float64  `json:"max_ms"`
	LoadgenCores float64  `json:"loadgen_cores"` // CPU the load generator itself used
}

type workerStats struct {
	lat        []int64 // ns, completions inside the measured window
	errors     int
	firstError string
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func percentile(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return float64(sorted[i]) / 1e6
}

func runPut(args []string) {
	fs := flag.NewFlagSet("put", flag.ExitOnError)
	system := fs.String("system", "distri", "distri or etcd")
	endpointsFlag := fs.String("endpoints", "", "host:port of every node (client ports)")
	target := fs.String("target", "all",
		"all: workers spread over the endpoints; leader: all to the leader")
	inflight := fs.Int("inflight", 64, "workers, each with one request outstanding")
	duration := fs.Duration("duration", 10*time.Second, "measured window")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the measured window")
	valueSize := fs.Int("value-size", 100, "bytes per value")
	keys := fs.Int("keys", 100000, "distinct keys written (round-robin per worker)")
	etcdConns := fs.Int("etcd-conns", 1, "etcd clients (gRPC connections) per endpoint")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	_ = fs.Parse(args)
	checkSystem(*system)
	endpoints := splitEndpoints(*endpointsFlag)
	if len(endpoints) == 0 || *inflight < 1 || *inflight > 100000 || *valueSize < 1 ||
		*valueSize > 1<<20 || *keys < 1 || *duration <= 0 || *etcdConns < 1 {
		fail("put: bad flags (need --endpoints, 1 <= --inflight <= 100000, " +
			"1 <= --value-size <= 1 MiB, --keys >= 1, --duration > 0, --etcd-conns >= 1)")
	}
	switch *target {
	case "all":
	case "leader":
		leader, err := findLeader(*system, endpoints)
		if err != nil {
			fail("%v", err)
		}
		endpoints = []string{leader}
	default:
		fail("--target must be all or leader")
	}

	// Open every connection before the clock starts.
	pool := newEtcdPool(*etcdConns)
	defer pool.Close()
	putters := make([]putter, *inflight)
	for i := range putters {
		ep := endpoints[i%len(endpoints)]
		if *system == "etcd" {
			c, err := pool.get(ep)
			if err != nil {
				fail("etcd client for %s: %v", ep, err)
			}
			putters[i] = &etcdPutter{c: c}
		} else {
			c, err := dialResp(ep, 5*time.Second)
			if err != nil {
				fail("connect %s: %v", ep, err)
			}
			putters[i] = &distriPutter{addr: ep, conn: c}
		}
	}
	defer func() {
		for _, p := range putters {
			p.Close()
		}
	}()

	value := make([]byte, *valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	start := time.Now()
	windowStart := start.Add(*warmup)
	windowEnd := windowStart.Add(*duration)
	stats := make([]workerStats, *inflight)
	var cpuAtWindow float64
	var cpuOnce sync.Once
	var wg sync.WaitGroup
	for w := 0; w < *inflight; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			st := &stats[w]
			st.lat = make([]int64, 0, 4096)
			key := make([]byte, 0, 32)
			for seq := w; ; seq += *inflight {
				t0 := time.Now()
				if !t0.Before(windowEnd) {
					return
				}
				if !t0.Before(windowStart) {
					cpuOnce.Do(func() { cpuAtWindow = cpuSeconds() })
				}
				key = append(key[:0], "bench:"...)
				key = strconv.AppendInt(key, int64(seq%*keys), 10)
				err := putters[w].Put(key, value, *timeout)
				t1 := time.Now()
				if t0.Before(windowStart) || t1.After(windowEnd) {
					continue // warm-up, or straddles the end of the window
				}
				if err != nil {
					if st.errors == 0 {
						st.firstError = err.Error()
					}
					st.errors++
					time.Sleep(time.Millisecond) // do not spin on a node that refuses
					continue
				}
				st.lat = append(st.lat, int64(t1.Sub(t0)))
			}
		}(w)
	}
	wg.Wait()
	cpuUsed := cpuSeconds() - cpuAtWindow

	res := putResult{System: *system, Inflight: *inflight, Target: *target,
		Endpoints: endpoints, Seconds: duration.Seconds()}
	var all []int64
	for _, st := range stats {
		all = append(all, st.lat...)
		res.Errors += st.errors
		if res.FirstError == "" {
			res.FirstError = st.firstError
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res.Ops = len(all)
	res.OpsPerSec = float64(res.Ops) / duration.Seconds()
	res.P50Ms = percentile(all, 0.50)
	res.P99Ms = percentile(all, 0.99)
	res.P999Ms = percentile(all, 0.999)
	res.MaxMs = percentile(all, 1)
	res.LoadgenCores = cpuUsed / duration.Seconds()
	printJSON(res)
}

// ---------------------------------------------------------------------------
// info: each node's view of the cluster
// ---------------------------------------------------------------------------

func runInfo(args []string) {
	fs := flag.NewFlagSet("info", flag.ExitOnError)
	system := fs.String("system", "distri", "distri or etcd")
	endpointsFlag := fs.String("endpoints", "", "host:port of every node")
	timeout := fs.Duration("timeout", 2*time.Second, "per-node timeout")
	_ = fs.Parse(args)
	checkSystem(*system)
	endpoints := splitEndpoints(*endpointsFlag)
	if len(endpoints) == 0 {
		fail("info: --endpoints is required")
	}
	printJSON(nodeInfos(*system, endpoints, *timeout))
}

// ---------------------------------------------------------------------------
// probe: time from a leader kill to the first acknowledged write
// ---------------------------------------------------------------------------

type probeResult struct {
	Endpoint string   `json:"endpoint"`
	Ms       float64  `json:"ms"` // -1: no write acknowledged within --max-wait
	Attempts int      `json:"attempts"`
	Errors   []string `json:"errors,omitempty"` // distinct error messages, at most 5
}

func monotonicNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		fail("clock_gettime: %v", err)
	}
	return ts.Nano()
}

// probeOnce starts a write through ep every interval, each on its own connection (Distri)
// or as its own request (etcd), each with a generous timeout, until one is acknowledged.
// Overlapping attempts make the resolution the interval, not the attempt timeout: a write
// that waits in a leaderless node would otherwise hide an election that ended meanwhile.
func probeOnce(system, ep string, n int, t0 int64, pool *etcdPool, interval,
	attemptTimeout, maxWait time.Duration, maxOutstanding int) probeResult {
	res := probeResult{Endpoint: ep, Ms: -1}
	value := []byte(strings.Repeat("f", 100))
	type outcome struct{ err error }
	done := make(chan outcome, maxOutstanding)
	outstanding := 0
	seen := map[string]bool{}
	note := func(err error) {
		if msg := err.Error(); !seen[msg] && len(seen) < 5 {
			seen[msg] = true
			res.Errors = append(res.Errors, msg)
		}
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	deadline := time.After(maxWait - time.Duration(monotonicNs()-t0))
	launch := func() {
		res.Attempts++
		outstanding++
		key := []byte(fmt.Sprintf("failover:%d:%d", n, res.Attempts))
		go func() {
			var p putter
			if system == "etcd" {
				c, err := pool.get(ep)
				if err != nil {
					done <- outcome{err}
					return
				}
				p = &etcdPutter{c: c}
			} else {
				p = &distriPutter{addr: ep}
			}
			err := p.Put(key, value, attemptTimeout)
			p.Close()
			done <- outcome{err}
		}()
	}
	launch()
	for {
		select {
		case o := <-done:
			outstanding--
			if o.err == nil {
				res.Ms = float64(monotonicNs()-t0) / 1e6
				// Let the stragglers finish before the next probe, so they cannot land
				// in its window; they time out after attemptTimeout at most.
				for ; outstanding > 0; outstanding-- {
					<-done
				}
				return res
			}
			note(o.err)
		case <-ticker.C:
			if outstanding < maxOutstanding {
				launch()
			}
		case <-deadline:
			for ; outstanding > 0; outstanding-- {
				<-done
			}
			return res
		}
	}
}

func runProbe(args []string) {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	system := fs.String("system", "distri", "distri or etcd")
	interval := fs.Duration("interval", 10*time.Millisecond, "start a new write this often")
	attemptTimeout := fs.Duration("attempt-timeout", 5*time.Second, "timeout of one write")
	maxWait := fs.Duration("max-wait", 60*time.Second, "give up after this long")
	maxOutstanding := fs.Int("max-outstanding", 500, "writes in flight at most")
	endpointsFlag := fs.String("endpoints", "", "etcd: connect to these before the first probe")
	_ = fs.Parse(args)
	checkSystem(*system)
	if *interval <= 0 || *attemptTimeout <= 0 || *maxOutstanding < 1 {
		fail("probe: --interval, --attempt-timeout and --max-outstanding must be positive")
	}

	// etcd clients persist across probes, as an application's would: a kill of another
	// node does not close them. (Distri attempts each open a fresh connection.)
	pool := newEtcdPool(1)
	defer pool.Close()
	if *system == "etcd" {
		for _, ep := range splitEndpoints(*endpointsFlag) {
			if _, err := pool.get(ep); err != nil {
				fail("etcd client for %s: %v", ep, err)
			}
		}
	}
	in := bufio.NewScanner(os.Stdin)
	for n := 0; in.Scan(); n++ {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		t0 := monotonicNs()
		if len(fields) > 1 {
			v, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				fail("probe: bad T0 %q", fields[1])
			}
			t0 = v
		}
		printJSON(probeOnce(*system, fields[0], n, t0, pool, *interval, *attemptTimeout,
			*maxWait, *maxOutstanding))
	}
}
