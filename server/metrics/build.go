package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cwpexport/cwpexport/server/buildinfo"
	"github.com/cwpexport/cwpexport/server/schema"
)

// buildInfo is the constant cwpexport_build_info gauge: 1, labelled with
// the running build, so that dashboards and alerts see which versions a
// fleet runs.
func buildInfo() prometheus.Collector {
	b := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels name the running build: version, revision (source commit) and goversion.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Commit, "goversion": b.Go},
	})
	g.Set(1)
	return g
}

var (
	descSchemaKnown = prometheus.NewDesc(namespace+"_schema_known_version",
		"Highest migration of the store's schema this build carries (store: registry or fleet).", []string{"store"}, nil)
	descSchemaDatabase = prometheus.NewDesc(namespace+"_schema_database_version",
		"Migration the store's database was at when this replica opened it.", []string{"store"}, nil)
	descSchemaRequires = prometheus.NewDesc(namespace+"_schema_requires_version",
		"Oldest schema a build must know to serve the store's database (its latest contracting migration; 0: any).", []string{"store"}, nil)
)

// schemaCollector reports the schema versions of the stores this process
// opened (package schema records them as they are opened).
type schemaCollector struct{}

func (schemaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSchemaKnown
	ch <- descSchemaDatabase
	ch <- descSchemaRequires
}

func (schemaCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range schema.Opened() {
		ch <- prometheus.MustNewConstMetric(descSchemaKnown, prometheus.GaugeValue, float64(st.Known), st.Store)
		ch <- prometheus.MustNewConstMetric(descSchemaDatabase, prometheus.GaugeValue, float64(st.Database), st.Store)
		ch <- prometheus.MustNewConstMetric(descSchemaRequires, prometheus.GaugeValue, float64(st.Requires), st.Store)
	}
}
