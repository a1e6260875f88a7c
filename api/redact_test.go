package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/model"
)

// TestPasswordsNeverLeaveTheAPI: a changefeed whose URIs carry a password
// and a secret parameter is listed, queried and updated without either.
func TestPasswordsNeverLeaveTheAPI(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	s.Store.PutInfo(t, model.ChangefeedInfo{ID: "secret", SourceURI: "postgres://repl:s3cretPW@db.example:5432/shop",
		SinkURI: "kafka://b:9092/t?protocol=canal-json&sasl-user=u&sasl-password=k4fkaPW", State: model.StateStopped, CreateTime: time.Now(),
		Error: &model.RunningError{Code: "source_error", Message: "connecting to postgres://repl:s3cretPW@db.example:5432/shop: refused"}})
	for _, path := range []string{"/api/v1/changefeeds", "/api/v1/changefeeds?all=true", "/api/v1/changefeeds/secret"} {
		code, body := call(t, s, "GET", path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		for _, secret := range []string{"s3cretPW", "k4fkaPW"} {
			if strings.Contains(string(body), secret) {
				t.Errorf("GET %s shows a secret:\n%s", path, body)
			}
		}
		if !strings.Contains(string(body), "db.example") {
			t.Errorf("GET %s lost the rest of the URI:\n%s", path, body)
		}
	}
}
