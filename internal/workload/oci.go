package workload

import (
	"encoding/json"
	"fmt"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Annotations kubelet's runtimes write into each container's OCI bundle
// (config.json): containerd's CRI plugin (pkg/cri/annotations) and CRI-O
// (pkg/annotations of cri-o, the io.kubernetes.* keys of kubelet's labels).
const (
	criContainerType    = "io.kubernetes.cri.container-type"
	criSandboxName      = "io.kubernetes.cri.sandbox-name"
	criSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	criSandboxUID       = "io.kubernetes.cri.sandbox-uid" // containerd 1.7 on
	criContainerName    = "io.kubernetes.cri.container-name"

	k8sPodName       = "io.kubernetes.pod.name"
	k8sPodNamespace  = "io.kubernetes.pod.namespace"
	k8sPodUID        = "io.kubernetes.pod.uid"
	k8sContainerName = "io.kubernetes.container.name"
	crioType         = "io.kubernetes.cri-o.ContainerType"
	crioName         = "io.kubernetes.cri-o.Name"
	podmanManager    = "io.container.manager" // "libpod"
)

// ParseOCIConfig reads the annotations of an OCI runtime config.json and
// returns the workload they name. A pod's sandbox (pause) container gives
// the pod without a container name. ok is false when the bundle names no
// Kubernetes pod; the runtime is then what the annotations say, if any.
func ParseOCIConfig(b []byte) (w snapshot.Workload, ok bool, err error) {
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return w, false, fmt.Errorf("OCI config.json: %w", err)
	}
	a := spec.Annotations
	switch {
	case a[criSandboxName] != "" || a[criSandboxNamespace] != "":
		w = snapshot.Workload{Runtime: Containerd, Namespace: a[criSandboxNamespace], Pod: a[criSandboxName], PodUID: a[criSandboxUID]}
		if a[criContainerType] != "sandbox" {
			w.Container = a[criContainerName]
		}
		return w, true, nil
	case a[k8sPodName] != "" || a[k8sPodNamespace] != "":
		w = snapshot.Workload{Runtime: CRIO, Namespace: a[k8sPodNamespace], Pod: a[k8sPodName], PodUID: a[k8sPodUID]}
		if a[crioType] != "sandbox" && a[k8sContainerName] != "POD" {
			w.Container = a[k8sContainerName]
		}
		return w, true, nil
	case a[podmanManager] == "libpod":
		w.Runtime = Podman
	}
	return w, false, nil
}

// ParseDockerConfig reads docker's config.v2.json of a container
// (DATA-ROOT/containers/ID/config.v2.json): its name, and the pod when
// cri-dockerd made it for kubelet (the io.kubernetes.* labels).
func ParseDockerConfig(b []byte) (snapshot.Workload, error) {
	var c struct {
		ID     string `json:"ID"`
		Name   string `json:"Name"`
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"Config"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return snapshot.Workload{}, fmt.Errorf("docker config.v2.json: %w", err)
	}
	w := snapshot.Workload{Runtime: Docker, ContainerID: c.ID, Container: trimSlash(c.Name)}
	l := c.Config.Labels
	if l[k8sPodName] != "" {
		w.Namespace, w.Pod, w.PodUID, w.Container = l[k8sPodNamespace], l[k8sPodName], l[k8sPodUID], l[k8sContainerName]
		if w.Container == "POD" {
			w.Container = "" // the sandbox
		}
	}
	return w, nil
}

func trimSlash(s string) string {
	if len(s) > 0 && s[0] == '/' {
		return s[1:]
	}
	return s
}

// ParseContainersJSON reads containers/storage's containers.json (the
// store podman, CRI-O and buildah share) into id → first name.
func ParseContainersJSON(b []byte) (map[string]string, error) {
	var cs []struct {
		ID    string   `json:"id"`
		Names []string `json:"names"`
	}
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("containers.json: %w", err)
	}
	names := make(map[string]string, len(cs))
	for _, c := range cs {
		if len(c.Names) > 0 {
			names[c.ID] = c.Names[0]
		}
	}
	return names, nil
}
