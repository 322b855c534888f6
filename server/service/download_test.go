package service

import "testing"

func TestFileNameKeepsOnlyAPlainBaseName(t *testing.T) {
	for _, tc := range []struct{ disposition, want string }{
		{`attachment; filename="cwp-license-detail-7.csv"`, "cwp-license-detail-7.csv"},
		{`attachment; filename="../../etc/passwd"`, "passwd"},
		{`attachment; filename="..\\..\\boot.ini"`, "boot.ini"},
		{`attachment; filename*=UTF-8''%E5%AF%BC%E5%87%BA.csv`, "导出.csv"},
		{`attachment; filename="a\"b.csv"`, "cwp-license-detail-7.csv"},
		{`attachment; filename="/"`, "cwp-license-detail-7.csv"},
		{`attachment; filename=".."`, "cwp-license-detail-7.csv"},
		{`attachment; filename=""`, "cwp-license-detail-7.csv"},
		{``, "cwp-license-detail-7.csv"},
		{`garbage;;`, "cwp-license-detail-7.csv"},
	} {
		if got := fileName(tc.disposition, 7); got != tc.want {
			t.Errorf("fileName(%q) = %q, want %q", tc.disposition, got, tc.want)
		}
	}
}
