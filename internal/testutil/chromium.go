package testutil

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Page is what a headless Chromium saw of one page.
type Page struct {
	Requests   []string // URLs requested, the page's own included
	Failed     []string // requests that failed, with the reason
	Console    []string // console messages at error level, and uncaught exceptions
	Value      json.RawMessage
	Screenshot []byte // PNG of the whole page
}

// ChromiumPage opens url in Debian's chromium, headless and offline, over
// the DevTools protocol on a pipe (--remote-debugging-pipe: no port, no
// websocket library), waits for the load event and for ready (a JavaScript
// expression) to be true, evaluates expr, and takes a full-page screenshot.
func ChromiumPage(t testing.TB, url, ready, expr string) Page {
	t.Helper()
	bin := RequireTool(t, "chromium")
	// fd 3 is what chromium reads, fd 4 what it writes.
	toChrome, ourW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ourR, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--disable-default-apps", "--mute-audio", "--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	fromChrome.Close()
	defer func() {
		ourW.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() // by pid: the browser this test started
			<-done
		}
	}()
	c := &cdp{w: ourW, replies: map[int]chan cdpMsg{}, events: make(chan cdpMsg, 1024)}
	go c.read(bufio.NewReader(ourR))

	var page Page
	var targets struct {
		TargetInfos []struct{ TargetID, Type string } `json:"targetInfos"`
	}
	c.call(t, "", "Target.getTargets", nil, &targets)
	target := ""
	for _, ti := range targets.TargetInfos {
		if ti.Type == "page" {
			target = ti.TargetID
		}
	}
	if target == "" {
		t.Fatalf("chromium has no page target: %s", stderr.String())
	}
	var att struct{ SessionID string }
	c.call(t, "", "Target.attachToTarget", map[string]any{"targetId": target, "flatten": true}, &att)
	s := att.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable", "Network.enable"} {
		c.call(t, s, m, nil, nil)
	}
	c.call(t, s, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	c.call(t, s, "Page.navigate", map[string]any{"url": url}, nil)
	deadline := time.After(30 * time.Second)
	loaded := false
	for !loaded {
		select {
		case ev := <-c.events:
			page.event(ev, &loaded)
		case <-deadline:
			t.Fatalf("chromium: %s never loaded: %s", url, stderr.String())
		}
	}
	Eventually(t, 20*time.Second, func() error {
		var res evalResult
		c.call(t, s, "Runtime.evaluate", map[string]any{"expression": ready, "returnByValue": true}, &res)
		if string(res.Result.Value) != "true" {
			return fmt.Errorf("the page never became ready (%s)", ready)
		}
		return nil
	})
	var res evalResult
	c.call(t, s, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
	if res.ExceptionDetails != nil {
		t.Fatalf("evaluating %s: %s", expr, res.ExceptionDetails)
	}
	page.Value = res.Result.Value
	var shot struct{ Data string }
	c.call(t, s, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &shot)
	if page.Screenshot, err = base64.StdEncoding.DecodeString(shot.Data); err != nil {
		t.Fatal(err)
	}
	// Events that arrived meanwhile (late console errors, requests).
	for {
		select {
		case ev := <-c.events:
			page.event(ev, &loaded)
			continue
		default:
		}
		break
	}
	c.call(t, "", "Browser.close", nil, nil)
	return page
}

type evalResult struct {
	Result struct {
		Value json.RawMessage `json:"value"`
	} `json:"result"`
	ExceptionDetails json.RawMessage `json:"exceptionDetails"`
}

func (p *Page) event(ev cdpMsg, loaded *bool) {
	var params map[string]json.RawMessage
	json.Unmarshal(ev.Params, &params)
	switch ev.Method {
	case "Page.loadEventFired":
		*loaded = true
	case "Network.requestWillBeSent":
		var r struct{ Request struct{ URL string } }
		json.Unmarshal(ev.Params, &r)
		p.Requests = append(p.Requests, r.Request.URL)
	case "Network.loadingFailed":
		p.Failed = append(p.Failed, string(ev.Params))
	case "Runtime.exceptionThrown":
		p.Console = append(p.Console, "exception: "+string(ev.Params))
	case "Runtime.consoleAPICalled":
		var c struct{ Type string }
		json.Unmarshal(ev.Params, &c)
		if c.Type == "error" || c.Type == "assert" {
			p.Console = append(p.Console, "console: "+string(ev.Params))
		}
	case "Log.entryAdded":
		var l struct {
			Entry struct{ Level, Text, URL string }
		}
		json.Unmarshal(ev.Params, &l)
		if l.Entry.Level == "error" {
			p.Console = append(p.Console, "log: "+l.Entry.Text+" "+l.Entry.URL)
		}
	}
}

type cdpMsg struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
}

// cdp speaks the DevTools protocol: JSON messages, each ended by a NUL.
type cdp struct {
	w       *os.File
	mu      sync.Mutex
	next    int
	replies map[int]chan cdpMsg
	events  chan cdpMsg
}

func (c *cdp) read(r *bufio.Reader) {
	for {
		b, err := r.ReadBytes(0)
		if err != nil {
			close(c.events)
			return
		}
		var m cdpMsg
		if json.Unmarshal(b[:len(b)-1], &m) != nil {
			continue
		}
		if m.ID != 0 {
			c.mu.Lock()
			ch := c.replies[m.ID]
			delete(c.replies, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		select {
		case c.events <- m:
		default: // a flood of events the test does not read
		}
	}
}

func (c *cdp) call(t testing.TB, session, method string, params any, out any) {
	t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan cdpMsg, 1)
	c.replies[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b, _ := json.Marshal(msg)
	if _, err := c.w.Write(append(b, 0)); err != nil {
		if method == "Browser.close" {
			return
		}
		t.Fatalf("chromium %s: %v", method, err)
	}
	select {
	case m := <-ch:
		if len(m.Error) > 0 {
			t.Fatalf("chromium %s: %s", method, m.Error)
		}
		if out != nil {
			if err := json.Unmarshal(m.Result, out); err != nil {
				t.Fatalf("chromium %s: %v", method, err)
			}
		}
	case <-time.After(30 * time.Second):
		if method != "Browser.close" {
			t.Fatalf("chromium %s: no reply", method)
		}
	}
}
