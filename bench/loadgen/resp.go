// A small RESP client for the load generator: one blocking connection that sends one command
// and reads one reply. It speaks just enough of RESP2/RESP3 to send SET and read CLUSTER.INFO;
// it is not a general client. Every buffer is bounded (maxReplyBytes) so a confused server
// cannot make the load generator allocate without limit.

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

const maxReplyBytes = 1 << 20 // a SET or CLUSTER.INFO reply is a few hundred bytes

// ErrorReply is a RESP error ("-ERR ..."): the server answered, and the answer is no.
type ErrorReply struct{ Msg string }

func (e *ErrorReply) Error() string { return e.Msg }

type respConn struct {
	conn net.Conn
	r    *bufio.Reader
	out  []byte
}

func dialResp(addr string, timeout time.Duration) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &respConn{conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

func (c *respConn) Close() error { return c.conn.Close() }

// appendCommand appends args as one RESP array of bulk strings.
func appendCommand(out []byte, args ...[]byte) []byte {
	out = append(out, '*')
	out = strconv.AppendInt(out, int64(len(args)), 10)
	out = append(out, '\r', '\n')
	for _, a := range args {
		out = append(out, '$')
		out = strconv.AppendInt(out, int64(len(a)), 10)
		out = append(out, '\r', '\n')
		out = append(out, a...)
		out = append(out, '\r', '\n')
	}
	return out
}

// Do sends one command and returns its reply: string, int64, []any, map[string]any, nil, or
// an *ErrorReply as the error. deadline zero means none.
func (c *respConn) Do(deadline time.Time, args ...[]byte) (any, error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	c.out = appendCommand(c.out[:0], args...)
	if _, err := c.conn.Write(c.out); err != nil {
		return nil, err
	}
	budget := maxReplyBytes
	return readValue(c.r, &budget)
}

// SetOK sends SET key value and succeeds only on +OK. It is the hot path of the put load,
// so it skips the generic reader when the reply is the expected five bytes.
func (c *respConn) SetOK(deadline time.Time, key, value []byte) error {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return err
	}
	c.out = appendCommand(c.out[:0], []byte("SET"), key, value)
	if _, err := c.conn.Write(c.out); err != nil {
		return err
	}
	head, err := c.r.Peek(5)
	if err == nil && string(head) == "+OK\r\n" {
		_, _ = c.r.Discard(5)
		return nil
	}
	budget := maxReplyBytes
	v, err := readValue(c.r, &budget)
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected reply to SET: %v", v)
}

func readLine(r *bufio.Reader, budget *int) (string, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("RESP line longer than 4 KiB")
		}
		return "", err
	}
	*budget -= len(line)
	if *budget < 0 {
		return "", errors.New("RESP reply larger than the limit")
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return "", fmt.Errorf("malformed RESP line %q", line)
	}
	return string(line[:len(line)-2]), nil
}

func readValue(r *bufio.Reader, budget *int) (any, error) {
	line, err := readLine(r, budget)
	if err != nil {
		return nil, err
	}
	kind, rest := line[0], line[1:]
	switch kind {
	case '+':
		return rest, nil
	case '-', '!':
		return nil, &ErrorReply{Msg: rest}
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case ',':
		return strconv.ParseFloat(rest, 64)
	case '#':
		return rest == "t", nil
	case '_':
		return nil, nil
	case '$', '=':
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("bad bulk length %q", rest)
		}
		if n < 0 {
			return nil, nil
		}
		if *budget -= n + 2; *budget < 0 {
			return nil, errors.New("RESP reply larger than the limit")
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*', '~', '>':
		n, err := strconv.Atoi(rest)
		if err != nil || n > maxReplyBytes {
			return nil, fmt.Errorf("bad array length %q", rest)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, 0, n)
		for i := 0; i < n; i++ {
			v, err := readValue(r, budget)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case '%':
		n, err := strconv.Atoi(rest)
		if err != nil || n > maxReplyBytes {
			return nil, fmt.Errorf("bad map length %q", rest)
		}
		out := make(map[string]any, n)
		for i := 0; i < n; i++ {
			k, err := readValue(r, budget)
			if err != nil {
				return nil, err
			}
			v, err := readValue(r, budget)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown RESP type %q", kind)
}

// asMap reads a RESP3 map, or the flat key-value array RESP2 sends for one.
func asMap(v any) (map[string]any, error) {
	switch m := v.(type) {
	case map[string]any:
		return m, nil
	case []any:
		if len(m)%2 != 0 {
			return nil, errors.New("odd-length array where a map was expected")
		}
		out := make(map[string]any, len(m)/2)
		for i := 0; i < len(m); i += 2 {
			out[fmt.Sprint(m[i])] = m[i+1]
		}
		return out, nil
	}
	return nil, fmt.Errorf("expected a map, got %T", v)
}
