package upstream

import (
	"testing"
	"time"
)

// TestHedgeDelaySpikes: the automatic hedge delay of an upstream that
// answers in about 20 ms and spikes on a tenth of its requests is set
// from its ordinary answers once hedges beat its spikes (the copies they
// beat are lower bounds, left out), and at three times its median while
// its spikes are answered unhedged.
func TestHedgeDelaySpikes(t *testing.T) {
	p := NewPool([]Candidate{{URL: "http://127.0.0.1:1"}}, PoolConfig{})
	m := p.members[0]
	fill := func(spike time.Duration, censored bool) {
		m.nrecent = 0
		for i := range window {
			m.recent[i], m.censored[i] = 20*time.Millisecond+time.Duration(i%5)*100*time.Microsecond, false
			if i%10 == 9 {
				m.recent[i], m.censored[i] = spike, censored
			}
			m.nrecent++
		}
	}
	fill(75*time.Millisecond, true) // spikes a hedge beat after 75 ms
	if d := p.hedgeDelay(m); d < 20*time.Millisecond || d > 21*time.Millisecond {
		t.Errorf("hedged spikes: delay %v, want the ordinary answers' p99 (20.4 ms)", d)
	}
	fill(2*time.Second, false) // spikes answered in 2 s, unhedged
	if d := p.hedgeDelay(m); d < 60*time.Millisecond || d > 61*time.Millisecond {
		t.Errorf("unhedged spikes: delay %v, want three times the median (60.3 ms)", d)
	}
}
