package exporter

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapersEnv makes this test binary a crowd of scrapers (TestMain): the
// variable holds a scrapeLoad in JSON; the process scrapes, prints a
// scrapeResult in JSON and exits. TestLoad runs its scrapers in such a
// process, so that the heap it measures is the exporter's alone, not the
// parsers' of 50 responses at once.
const scrapersEnv = "BACKLOG_TEST_SCRAPERS"

type scrapeLoad struct {
	URL        string
	Scrapers   int
	MaxScrapes int // per scraper, or until Deadline, whichever comes first
	Deadline   time.Time
	Listeners  int // listener series each response must hold
	Sources    int // backlog_scrape_errors_total series each must hold
}

type scrapeResult struct {
	Scrapes, Failures int64
	Errors            []string // the first few
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(scrapersEnv); spec != "" {
		var l scrapeLoad
		if err := json.Unmarshal([]byte(spec), &l); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", scrapersEnv, err)
			os.Exit(2)
		}
		json.NewEncoder(os.Stdout).Encode(l.run())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// run scrapes l.URL from l.Scrapers goroutines; each response must parse
// whole and hold every listener and self-metric series.
func (l scrapeLoad) run() scrapeResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: l.Scrapers}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func() error {
		resp, err := client.Get(l.URL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %s", resp.Status)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			return fmt.Errorf("incomplete or malformed response: %w", err)
		}
		if n := len(mfs["backlog_listener_accept_queue"].GetMetric()); n != l.Listeners {
			return fmt.Errorf("%d listener series, want %d", n, l.Listeners)
		}
		if n := len(mfs["backlog_scrape_errors_total"].GetMetric()); n != l.Sources {
			return fmt.Errorf("%d backlog_scrape_errors_total series, want %d", n, l.Sources)
		}
		return nil
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		res scrapeResult
		n   atomic.Int64
	)
	for range l.Scrapers {
		wg.Go(func() {
			for i := 0; i < l.MaxScrapes && time.Now().Before(l.Deadline); i++ {
				err := get()
				n.Add(1)
				if err != nil {
					mu.Lock()
					if res.Failures++; len(res.Errors) < 3 {
						res.Errors = append(res.Errors, err.Error())
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	res.Scrapes = n.Load()
	return res
}
