package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// The hostile layers are what they claim to be to a tar reader.
func TestHostileLayers(t *testing.T) {
	sparse, err := SparseLayer("big", 100<<30, []byte("end"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sparse) > 20<<10 {
		t.Errorf("sparse layer is %d bytes", len(sparse))
	}
	tr := tar.NewReader(bytes.NewReader(sparse))
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "big" || hdr.Size != 100<<30 {
		t.Fatalf("sparse layer header = %+v, %v", hdr, err)
	}
	// The end of the file holds the data, after a hole.
	if _, err := io.CopyN(io.Discard, tr, 1<<20); err != nil {
		t.Fatal(err)
	}

	small, err := SparseLayer("small", 10000, []byte("end"))
	if err != nil {
		t.Fatal(err)
	}
	tr = tar.NewReader(bytes.NewReader(small))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(tr)
	if err != nil || len(b) != 10000 || !bytes.HasSuffix(b, []byte("end")) || bytes.Count(b, []byte{0}) != 9997 {
		t.Errorf("small sparse file: %d bytes, ends %q, %v", len(b), b[len(b)-3:], err)
	}

	zeros, err := ZerosLayer(4, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zeros))
	if err != nil {
		t.Fatal(err)
	}
	tr = tar.NewReader(zr)
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		total += hdr.Size
	}
	if total != 32<<20 || len(zeros) > 1<<20 {
		t.Errorf("zeros layer: %d bytes expand to %d", len(zeros), total)
	}
}
