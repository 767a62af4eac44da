package postgres

import "testing"

func TestLocalHost(t *testing.T) {
	for host, want := range map[string]bool{
		"/var/run/postgresql": true,
		"localhost":           true,
		"127.0.0.1":           true,
		"127.8.9.10":          true,
		"::1":                 true,
		"10.0.0.5":            false,
		"db.example.internal": false,
		"::ffff:10.1.2.3":     false,
		"":                    false,
	} {
		if got := localHost(host); got != want {
			t.Errorf("localHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestOnThisMachine(t *testing.T) {
	s := openTest(t)
	if !s.OnThisMachine() {
		t.Errorf("the test server at %s is not seen as on this machine", s.pool.Config().ConnConfig.Host)
	}
}
