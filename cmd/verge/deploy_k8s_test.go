package main

// The Kubernetes manifests (deploy/k8s): parsed strictly against the parts
// of the Kubernetes API they use (an unknown or misspelt field fails), with
// kinds and apiVersions, labels and selectors, Service ports, probes,
// volumes, the pod security "restricted" profile, and every ConfigMap's
// Verge config loaded with its subcommand's own type and checked against
// the containers that mount it.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vergecdn/verge/dnsredirect/geo"
)

const k8sNamespace = "verge"

// ---- the subset of the Kubernetes API the manifests use

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sHead struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
}

type k8sNamespaceObj struct {
	k8sHead `yaml:",inline"`
}

type k8sSecret struct {
	k8sHead    `yaml:",inline"`
	Type       string            `yaml:"type"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type k8sConfigMap struct {
	k8sHead `yaml:",inline"`
	Data    map[string]string `yaml:"data"`
}

type k8sSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type k8sIntOrString struct {
	Int   int
	Str   string
	IsStr bool
}

func (v *k8sIntOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want an integer or a string", n.Line)
	}
	if n.Tag == "!!int" {
		i, err := strconv.Atoi(n.Value)
		v.Int = i
		return err
	}
	v.Str, v.IsStr = n.Value, true
	return nil
}

type k8sDeployment struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		Replicas *int        `yaml:"replicas"`
		Selector k8sSelector `yaml:"selector"`
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxUnavailable k8sIntOrString `yaml:"maxUnavailable"`
				MaxSurge       k8sIntOrString `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template k8sPodTemplate `yaml:"template"`
	} `yaml:"spec"`
}

type k8sStatefulSet struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		ServiceName          string         `yaml:"serviceName"`
		Replicas             *int           `yaml:"replicas"`
		PodManagementPolicy  string         `yaml:"podManagementPolicy"`
		Selector             k8sSelector    `yaml:"selector"`
		Template             k8sPodTemplate `yaml:"template"`
		VolumeClaimTemplates []k8sPVC       `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sPodTemplate struct {
	Metadata k8sMeta    `yaml:"metadata"`
	Spec     k8sPodSpec `yaml:"spec"`
}

type k8sPodSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	EnableServiceLinks            *bool `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
		RunAsUser      *int  `yaml:"runAsUser"`
		RunAsGroup     *int  `yaml:"runAsGroup"`
		FSGroup        *int  `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Affinity *struct {
		PodAntiAffinity struct {
			Preferred []struct {
				Weight          int `yaml:"weight"`
				PodAffinityTerm struct {
					TopologyKey   string      `yaml:"topologyKey"`
					LabelSelector k8sSelector `yaml:"labelSelector"`
				} `yaml:"podAffinityTerm"`
			} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"podAntiAffinity"`
	} `yaml:"affinity"`
	InitContainers []k8sContainer `yaml:"initContainers"`
	Containers     []k8sContainer `yaml:"containers"`
	Volumes        []k8sVolume    `yaml:"volumes"`
}

type k8sContainer struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	Env             []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	Lifecycle *struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string         `yaml:"path"`
		Port k8sIntOrString `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
	SuccessThreshold    int `yaml:"successThreshold"`
}

type k8sKeyPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string       `yaml:"name"`
		Items []k8sKeyPath `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string       `yaml:"secretName"`
		DefaultMode int          `yaml:"defaultMode"`
		Items       []k8sKeyPath `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir *struct {
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
}

type k8sService struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		Type                     string            `yaml:"type"`
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		ExternalTrafficPolicy    string            `yaml:"externalTrafficPolicy"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string         `yaml:"name"`
			Port       int            `yaml:"port"`
			TargetPort k8sIntOrString `yaml:"targetPort"`
			Protocol   string         `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPVC struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		AccessModes []string `yaml:"accessModes"`
		Resources   struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
		StorageClassName string `yaml:"storageClassName"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		MinAvailable   *k8sIntOrString `yaml:"minAvailable"`
		MaxUnavailable *k8sIntOrString `yaml:"maxUnavailable"`
		Selector       k8sSelector     `yaml:"selector"`
	} `yaml:"spec"`
}

// k8sAPIVersions is the apiVersion of every kind the manifests use.
var k8sAPIVersions = map[string]string{
	"Namespace": "v1", "Secret": "v1", "ConfigMap": "v1", "Service": "v1", "PersistentVolumeClaim": "v1",
	"Deployment": "apps/v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1",
}

// k8sWorkload is a Deployment's or StatefulSet's pods.
type k8sWorkload struct {
	kind, name string
	replicas   int
	selector   map[string]string
	template   k8sPodTemplate
	sts        *k8sStatefulSet
	where      string
}

type k8sManifests struct {
	files      []string
	namespaces map[string]*k8sNamespaceObj
	secrets    map[string]*k8sSecret
	configMaps map[string]*k8sConfigMap
	services   map[string]*k8sService
	pvcs       map[string]*k8sPVC
	pdbs       map[string]*k8sPDB
	workloads  []*k8sWorkload
}

// decodeStrict decodes one document into v, refusing unknown fields.
func decodeStrict(doc *yaml.Node, v any) error {
	b, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func loadK8s(t *testing.T) *k8sManifests {
	t.Helper()
	m := &k8sManifests{
		namespaces: map[string]*k8sNamespaceObj{}, secrets: map[string]*k8sSecret{}, configMaps: map[string]*k8sConfigMap{},
		services: map[string]*k8sService{}, pvcs: map[string]*k8sPVC{}, pdbs: map[string]*k8sPDB{},
	}
	files, err := filepath.Glob(filepath.Join(deployDir, "k8s/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	seen := map[string]string{}
	for _, file := range files {
		base := filepath.Base(file)
		if base == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, base)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: document %d: %v", base, i, err)
			}
			if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
				continue // only comments
			}
			where := fmt.Sprintf("%s:%d", base, doc.Content[0].Line)
			var head k8sHead
			if err := doc.Decode(&head); err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			want, known := k8sAPIVersions[head.Kind]
			switch {
			case !known:
				t.Errorf("%s: kind %q is not one this test knows (add it, with its fields)", where, head.Kind)
				continue
			case head.APIVersion != want:
				t.Errorf("%s: %s has apiVersion %q, want %q", where, head.Kind, head.APIVersion, want)
			}
			if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`).MatchString(head.Metadata.Name) {
				t.Errorf("%s: metadata.name %q is not a DNS label", where, head.Metadata.Name)
			}
			if head.Kind == "Namespace" {
				if head.Metadata.Name != k8sNamespace {
					t.Errorf("%s: namespace %q, want %q", where, head.Metadata.Name, k8sNamespace)
				}
			} else if head.Metadata.Namespace != k8sNamespace {
				t.Errorf("%s: %s %s in namespace %q, want %q", where, head.Kind, head.Metadata.Name, head.Metadata.Namespace, k8sNamespace)
			}
			if head.Metadata.Labels["app.kubernetes.io/part-of"] != "verge" {
				t.Errorf("%s: %s %s: want the label app.kubernetes.io/part-of: verge", where, head.Kind, head.Metadata.Name)
			}
			id := head.Kind + "/" + head.Metadata.Name
			if prev, dup := seen[id]; dup {
				t.Errorf("%s: %s again (first at %s)", where, id, prev)
			}
			seen[id] = where
			var obj any
			switch head.Kind {
			case "Namespace":
				o := &k8sNamespaceObj{}
				m.namespaces[head.Metadata.Name], obj = o, o
			case "Secret":
				o := &k8sSecret{}
				m.secrets[head.Metadata.Name], obj = o, o
			case "ConfigMap":
				o := &k8sConfigMap{}
				m.configMaps[head.Metadata.Name], obj = o, o
			case "Service":
				o := &k8sService{}
				m.services[head.Metadata.Name], obj = o, o
			case "PersistentVolumeClaim":
				o := &k8sPVC{}
				m.pvcs[head.Metadata.Name], obj = o, o
			case "PodDisruptionBudget":
				o := &k8sPDB{}
				m.pdbs[head.Metadata.Name], obj = o, o
			case "Deployment":
				o := &k8sDeployment{}
				obj = o
				defer func() {
					m.workloads = append(m.workloads, &k8sWorkload{kind: "Deployment", name: o.Metadata.Name, replicas: deref(o.Spec.Replicas, 1),
						selector: o.Spec.Selector.MatchLabels, template: o.Spec.Template, where: where})
				}()
			case "StatefulSet":
				o := &k8sStatefulSet{}
				obj = o
				defer func() {
					m.workloads = append(m.workloads, &k8sWorkload{kind: "StatefulSet", name: o.Metadata.Name, replicas: deref(o.Spec.Replicas, 1),
						selector: o.Spec.Selector.MatchLabels, template: o.Spec.Template, sts: o, where: where})
				}()
			}
			if err := decodeStrict(&doc, obj); err != nil {
				t.Errorf("%s: %s: %v", where, id, err)
			}
		}
	}
	return m
}

func deref(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// selects reports whether a selector picks pods with labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a Service targetPort or probe port in c.
func containerPort(c k8sContainer, p k8sIntOrString, protocol string) (int, bool) {
	if protocol == "" {
		protocol = "TCP"
	}
	for _, cp := range c.Ports {
		proto := cp.Protocol
		if proto == "" {
			proto = "TCP"
		}
		if proto != protocol {
			continue
		}
		if (p.IsStr && cp.Name == p.Str) || (!p.IsStr && cp.ContainerPort == p.Int) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// k8sNode is a Verge container and its config.
type k8sNode struct {
	w   *k8sWorkload
	c   k8sContainer
	cfg *nodeConfig
	// ports maps a listener role to its port after the flags.
	ports map[string]int
}

func TestK8sManifests(t *testing.T) {
	m := loadK8s(t)
	if t.Failed() {
		t.FailNow()
	}

	// kustomization.yaml lists every manifest, in the namespace.
	var kust struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Namespace  string   `yaml:"namespace"`
		Resources  []string `yaml:"resources"`
		Images     []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	kb, err := os.ReadFile(filepath.Join(deployDir, "k8s/kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kdoc yaml.Node
	if err := yaml.Unmarshal(kb, &kdoc); err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(&kdoc, &kust); err != nil {
		t.Errorf("kustomization.yaml: %v", err)
	}
	if kust.Kind != "Kustomization" || kust.Namespace != k8sNamespace {
		t.Errorf("kustomization.yaml: kind %q namespace %q", kust.Kind, kust.Namespace)
	}
	// Every manifest but the Secret's placeholder: applying it again would
	// empty a running fleet's tokens.
	want := slices.DeleteFunc(slices.Clone(m.files), func(f string) bool { return f == "secret.yaml" })
	if got := slices.Sorted(slices.Values(kust.Resources)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("kustomization.yaml resources %v, want every manifest but secret.yaml %v", got, want)
	}
	if len(m.secrets) != 1 || m.secrets["verge-tokens"] == nil || !slices.Contains(m.files, "secret.yaml") {
		t.Errorf("want the Secret verge-tokens, alone, in secret.yaml")
	}
	if len(m.namespaces) != 1 {
		t.Errorf("want the namespace %s declared once", k8sNamespace)
	}

	// The Secret is a placeholder: empty values only (no token in git).
	for name, s := range m.secrets {
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: data must stay empty (fill it in the cluster)", name)
		}
		for k, v := range s.StringData {
			if v != "" {
				t.Errorf("Secret %s: %s is not empty: a token in git", name, k)
			}
		}
	}

	// Workloads: selectors match their pods; every Service, PDB and
	// anti-affinity term selects pods; pods follow the restricted profile.
	var nodes []*k8sNode
	for _, w := range m.workloads {
		t.Run(w.kind+"/"+w.name, func(t *testing.T) {
			nodes = append(nodes, checkWorkload(t, m, w)...)
		})
	}
	for name, s := range m.services {
		var matched []*k8sWorkload
		for _, w := range m.workloads {
			if selects(s.Spec.Selector, w.template.Metadata.Labels) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			t.Errorf("Service %s: selector %v matches no pods", name, s.Spec.Selector)
		}
		if s.Spec.ClusterIP == "None" && s.Spec.Type != "" {
			t.Errorf("Service %s: headless with type %s", name, s.Spec.Type)
		}
		if s.Spec.ExternalTrafficPolicy != "" && s.Spec.Type != "LoadBalancer" {
			t.Errorf("Service %s: externalTrafficPolicy without type LoadBalancer", name)
		}
		ports := map[string]bool{}
		for _, p := range s.Spec.Ports {
			if p.Name == "" || p.Port <= 0 || p.Port > 65535 {
				t.Errorf("Service %s: port %+v: want a name and a port", name, p)
			}
			key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			if ports[key] {
				t.Errorf("Service %s: port %s twice", name, key)
			}
			ports[key] = true
			for _, w := range matched {
				found := false
				for _, c := range w.template.Spec.Containers {
					if _, ok := containerPort(c, p.TargetPort, p.Protocol); ok {
						found = true
					}
				}
				if !found {
					t.Errorf("Service %s: port %s targets %+v, which no container of %s %s declares", name, p.Name, p.TargetPort, w.kind, w.name)
				}
			}
		}
	}
	for name, p := range m.pdbs {
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Errorf("PodDisruptionBudget %s: set one of minAvailable and maxUnavailable", name)
		}
		n := 0
		for _, w := range m.workloads {
			if selects(p.Spec.Selector.MatchLabels, w.template.Metadata.Labels) {
				n++
				if p.Spec.MinAvailable != nil && !p.Spec.MinAvailable.IsStr && p.Spec.MinAvailable.Int >= w.replicas {
					t.Errorf("PodDisruptionBudget %s: minAvailable %d blocks every eviction of %d replicas", name, p.Spec.MinAvailable.Int, w.replicas)
				}
			}
		}
		if n != 1 {
			t.Errorf("PodDisruptionBudget %s selects %d workloads, want 1", name, n)
		}
	}
	for name, pvc := range m.pvcs {
		if len(pvc.Spec.AccessModes) == 0 || pvc.Spec.Resources.Requests["storage"] == "" {
			t.Errorf("PersistentVolumeClaim %s: want accessModes and a storage request", name)
		}
	}
	for name := range m.configMaps {
		used := false
		for _, w := range m.workloads {
			for _, v := range w.template.Spec.Volumes {
				used = used || (v.ConfigMap != nil && v.ConfigMap.Name == name)
			}
		}
		if !used {
			t.Errorf("ConfigMap %s is mounted by no pod", name)
		}
	}
	if t.Failed() {
		return
	}
	checkK8sReferences(t, m, nodes)
}

// checkWorkload checks one Deployment or StatefulSet and loads the config of
// each of its Verge containers.
func checkWorkload(t *testing.T, m *k8sManifests, w *k8sWorkload) []*k8sNode {
	spec := w.template.Spec
	if !selects(w.selector, w.template.Metadata.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", w.selector, w.template.Metadata.Labels)
	}
	if w.replicas < 1 {
		t.Errorf("replicas %d", w.replicas)
	}
	if w.sts != nil {
		s := m.services[w.sts.Spec.ServiceName]
		if s == nil || s.Spec.ClusterIP != "None" || !selects(s.Spec.Selector, w.template.Metadata.Labels) {
			t.Errorf("serviceName %q: want a headless Service selecting these pods", w.sts.Spec.ServiceName)
		}
	}
	if a := spec.Affinity; a != nil {
		for _, p := range a.PodAntiAffinity.Preferred {
			if !selects(p.PodAffinityTerm.LabelSelector.MatchLabels, w.template.Metadata.Labels) || p.PodAffinityTerm.TopologyKey == "" {
				t.Errorf("anti-affinity term %+v does not spread these pods", p.PodAffinityTerm)
			}
		}
	}
	// Pod security: the restricted profile.
	psc := spec.SecurityContext
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || deref(psc.RunAsUser, 0) == 0 || psc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod securityContext: want runAsNonRoot, a non-zero runAsUser and seccompProfile RuntimeDefault")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("want automountServiceAccountToken: false (Verge never calls the Kubernetes API)")
	}
	volumes := map[string]k8sVolume{}
	for _, v := range spec.Volumes {
		if _, dup := volumes[v.Name]; dup {
			t.Errorf("volume %s twice", v.Name)
		}
		volumes[v.Name] = v
		kinds := 0
		if v.ConfigMap != nil {
			kinds++
			cm := m.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Errorf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; cm != nil && !ok {
					t.Errorf("volume %s: ConfigMap %s has no key %s", v.Name, v.ConfigMap.Name, it.Key)
				}
			}
		}
		if v.Secret != nil {
			kinds++
			// The files are root's: the pod's user reads them through its
			// fsGroup, and nobody else needs to.
			if mode := v.Secret.DefaultMode; psc.FSGroup == nil || mode&0o040 == 0 || mode&0o007 != 0 {
				t.Errorf("volume %s: defaultMode %#o with fsGroup %v: want group-readable, not world-readable, with an fsGroup", v.Name, mode, psc.FSGroup)
			}
			s := m.secrets[v.Secret.SecretName]
			if s == nil {
				t.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
			}
			for _, it := range v.Secret.Items {
				if _, ok := s.StringData[it.Key]; s != nil && !ok {
					t.Errorf("volume %s: Secret %s has no key %s", v.Name, v.Secret.SecretName, it.Key)
				}
			}
		}
		if v.PersistentVolumeClaim != nil {
			kinds++
			if m.pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
				t.Errorf("volume %s: no PersistentVolumeClaim %s", v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
		if v.EmptyDir != nil {
			kinds++
		}
		if kinds != 1 {
			t.Errorf("volume %s: want exactly one source, got %d", v.Name, kinds)
		}
	}
	if w.sts != nil {
		for _, vct := range w.sts.Spec.VolumeClaimTemplates {
			volumes[vct.Metadata.Name] = k8sVolume{Name: vct.Metadata.Name, PersistentVolumeClaim: &struct {
				ClaimName string `yaml:"claimName"`
			}{ClaimName: "(template)"}}
			if len(vct.Spec.AccessModes) == 0 || vct.Spec.Resources.Requests["storage"] == "" {
				t.Errorf("volumeClaimTemplate %s: want accessModes and a storage request", vct.Metadata.Name)
			}
		}
	}

	var nodes []*k8sNode
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for i, c := range all {
		init := i < len(spec.InitContainers)
		where := "container " + c.Name
		if c.Image == "" || len(c.Command) > 0 || len(c.Args) == 0 {
			t.Errorf("%s: want the verge image's entrypoint with args (a subcommand)", where)
			continue
		}
		if len(c.Resources.Requests) == 0 || len(c.Resources.Limits) == 0 ||
			c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
			t.Errorf("%s: want cpu and memory requests and a memory limit", where)
		}
		sc := c.SecurityContext
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("%s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities drop [ALL]", where)
		}
		mounts := map[string]bool{}
		for _, vm := range c.VolumeMounts {
			if _, ok := volumes[vm.Name]; !ok {
				t.Errorf("%s: mounts volume %s, which the pod does not declare", where, vm.Name)
			}
			if mounts[vm.MountPath] {
				t.Errorf("%s: two mounts at %s", where, vm.MountPath)
			}
			mounts[vm.MountPath] = true
		}
		// $(VAR) in args must be a declared env var.
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
			if e.Value == "" && (e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath == "") {
				t.Errorf("%s: env %s has no value", where, e.Name)
			}
		}
		for _, a := range c.Args {
			for _, ref := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(a, -1) {
				if !env[ref[1]] {
					t.Errorf("%s: args use $(%s), which is not in env", where, ref[1])
				}
			}
		}
		files := fileView{w: w, c: c, m: m, volumes: volumes}
		if c.Args[0] == "mmdb" {
			checkMMDBJob(t, where, c, files, init)
			continue
		}
		if init {
			t.Errorf("%s: an init container that is not verge mmdb build", where)
			continue
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s: want readiness and liveness probes", where)
		}
		cfgIdx := slices.Index(c.Args, "-config")
		if cfgIdx < 0 || cfgIdx+1 >= len(c.Args) {
			t.Errorf("%s: args %q have no -config FILE", where, c.Args)
			continue
		}
		data, src, err := files.read(c.Args[cfgIdx+1])
		if err != nil {
			t.Errorf("%s: -config: %v", where, err)
			continue
		}
		// The flags' values as the kubelet expands them: $(POD_IP) is an address.
		args := slices.Clone(c.Args[1:])
		for j := range args {
			args[j] = strings.NewReplacer("$(POD_IP)", "10.0.0.1", "$(POD_NAME)", w.name+"-0").Replace(args[j])
		}
		cfg, err := loadNode(src, c.Args[0], data, args)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		n := &k8sNode{w: w, c: c, cfg: cfg, ports: map[string]int{}}
		nodes = append(nodes, n)
		// Every listener's port is a declared container port, of the
		// right protocol; probes GET /healthz on the admin listener.
		for role, addr := range cfg.listens {
			_, p, err := addrPort(addr)
			if err != nil {
				t.Errorf("%s: listener %s %q: %v", where, role, addr, err)
				continue
			}
			n.ports[role] = p
			protos := []string{"TCP"}
			if role == "dns" {
				protos = []string{"UDP", "TCP"}
			}
			for _, proto := range protos {
				if _, ok := containerPort(c, k8sIntOrString{Int: p}, proto); !ok {
					t.Errorf("%s: listener %s on %d/%s is not a declared container port", where, role, p, proto)
				}
			}
		}
		for _, pr := range []struct {
			name string
			p    *k8sProbe
		}{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
			if pr.p == nil {
				continue
			}
			port, ok := containerPort(c, pr.p.HTTPGet.Port, "TCP")
			if pr.p.HTTPGet.Path != "/healthz" || !ok || port != n.ports["admin"] {
				t.Errorf("%s: %s GET %s on %+v, want /healthz on the admin port %d", where, pr.name, pr.p.HTTPGet.Path, pr.p.HTTPGet.Port, n.ports["admin"])
			}
		}
		// Files it reads exist in their Secret or ConfigMap; directories
		// it writes are on a writable volume (the root is read-only).
		for _, f := range cfg.reads {
			if err := files.readable(f); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
		for _, d := range cfg.writes {
			if err := files.writable(d); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	}
	return nodes
}

// fileView answers what a container sees at a path.
type fileView struct {
	w       *k8sWorkload
	c       k8sContainer
	m       *k8sManifests
	volumes map[string]k8sVolume
}

// mountAt returns the mount a path lies on (the deepest).
func (f fileView) mountAt(p string) (mountPath string, readOnly bool, v k8sVolume, ok bool) {
	for _, vm := range f.c.VolumeMounts {
		if (p == vm.MountPath || under(p, vm.MountPath)) && len(vm.MountPath) > len(mountPath) {
			mountPath, readOnly, v, ok = vm.MountPath, vm.ReadOnly, f.volumes[vm.Name], true
		}
	}
	return
}

// read returns a ConfigMap file's content and its name for messages.
func (f fileView) read(p string) ([]byte, string, error) {
	mp, _, v, ok := f.mountAt(p)
	if !ok || v.ConfigMap == nil {
		return nil, "", fmt.Errorf("%s is not in a mounted ConfigMap", p)
	}
	rel, _ := filepath.Rel(mp, p)
	key := rel
	if len(v.ConfigMap.Items) > 0 {
		key = ""
		for _, it := range v.ConfigMap.Items {
			if it.Path == rel {
				key = it.Key
			}
		}
	}
	cm := f.m.configMaps[v.ConfigMap.Name]
	data, found := cm.Data[key]
	if !found {
		return nil, "", fmt.Errorf("%s: ConfigMap %s has no key %q", p, v.ConfigMap.Name, rel)
	}
	return []byte(data), "ConfigMap " + v.ConfigMap.Name + " " + key, nil
}

// readable checks that a file a node reads will be there.
func (f fileView) readable(p string) error {
	mp, _, v, ok := f.mountAt(p)
	switch {
	case !ok:
		return fmt.Errorf("reads %s, which no volume provides", p)
	case v.Secret != nil:
		rel, _ := filepath.Rel(mp, p)
		s := f.m.secrets[v.Secret.SecretName]
		key := rel
		if len(v.Secret.Items) > 0 {
			key = ""
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
		}
		if _, found := s.StringData[key]; !found {
			return fmt.Errorf("reads %s, which Secret %s does not provide", p, v.Secret.SecretName)
		}
	case v.ConfigMap != nil:
		if _, _, err := f.read(p); err != nil {
			return err
		}
	}
	return nil
}

// writable checks that a directory a node writes is on a writable volume.
func (f fileView) writable(dir string) error {
	_, ro, v, ok := f.mountAt(dir)
	if !ok || ro || (v.EmptyDir == nil && v.PersistentVolumeClaim == nil) {
		return fmt.Errorf("writes in %s, which is not on a writable emptyDir or persistent volume", dir)
	}
	return nil
}

// checkMMDBJob checks "verge mmdb build": its CSV parses as the builder
// parses it, and it writes on a writable volume the main container reads.
func checkMMDBJob(t *testing.T, where string, c k8sContainer, files fileView, init bool) {
	if !init || len(c.Args) != 6 || c.Args[1] != "build" || c.Args[2] != "-csv" || c.Args[4] != "-out" {
		t.Errorf("%s: args %q, want an init container: mmdb build -csv FILE -out FILE", where, c.Args)
		return
	}
	data, src, err := files.read(c.Args[3])
	if err != nil {
		t.Errorf("%s: -csv: %v", where, err)
	} else if nets, err := geo.ParseCSV(src, bytes.NewReader(data)); err != nil || len(nets) == 0 {
		t.Errorf("%s: %s: %d networks, %v", where, src, len(nets), err)
	}
	if err := files.writable(path.Dir(c.Args[5])); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

// checkK8sReferences checks what the nodes say about each other: every URL
// reaches a Service (or a StatefulSet pod) port that is the right listener
// of the right component; the hub ring names the hub pods; DNS sites probe
// their region's edges.
func checkK8sReferences(t *testing.T, m *k8sManifests, nodes []*k8sNode) {
	hubPods := map[string][]string{} // region -> pod names
	for _, n := range nodes {
		if n.cfg.cmd == "hub" {
			if n.w.sts == nil {
				t.Errorf("%s: hubs are a StatefulSet, for stable names on the ring", n.w.name)
				continue
			}
			if i := slices.Index(n.c.Args, "-name"); i < 0 || n.c.Args[i+1] != "$(POD_NAME)" {
				t.Errorf("%s: want -name $(POD_NAME): a hub's name on the ring is its pod's", n.w.name)
			}
			for i := 0; i < n.w.replicas; i++ {
				hubPods[n.cfg.cache.Node.Region] = append(hubPods[n.cfg.cache.Node.Region], fmt.Sprintf("%s-%d", n.w.name, i))
			}
		}
	}
	for _, n := range nodes {
		where := n.w.kind + "/" + n.w.name
		for _, c := range n.cfg.calls {
			target, err := k8sResolve(m, nodes, c)
			if err != nil {
				t.Errorf("%s: %s %s: %v", where, c.key, c.url, err)
				continue
			}
			_ = target
		}
		// Nodes that report to management must give it an address it can
		// reach: the pod's, bound with -admin $(POD_IP):PORT.
		if (n.cfg.cmd == "edge" || n.cfg.cmd == "hub" || n.cfg.cmd == "scrubber") && n.cfg.reports() {
			if i := slices.Index(n.c.Args, "-admin"); i < 0 || !strings.HasPrefix(n.c.Args[i+1], "$(POD_IP):") {
				t.Errorf("%s: reports to management from a wildcard admin address; want -admin $(POD_IP):PORT", where)
			}
		}
		if n.cfg.cmd != "edge" {
			continue
		}
		c := n.cfg.cache
		var names []string
		for i, h := range c.Parents.Hubs {
			names = append(names, h.Name)
			host, _, _ := hostPort(h.URL)
			if !strings.HasPrefix(host, h.Name+".") || h.Region != c.Node.Region {
				t.Errorf("%s: parents.hubs[%d] %s at %s: want the pod of that name in region %s", where, i, h.Name, h.URL, c.Node.Region)
			}
		}
		if want := hubPods[c.Node.Region]; !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(want))) {
			t.Errorf("%s: parents.hubs %v, want every %s hub pod %v", where, names, c.Node.Region, want)
		}
	}
	// DNS: each site's edges are probed through a Service selecting that
	// region's edge pods.
	for _, n := range nodes {
		if n.cfg.dns == nil {
			continue
		}
		for i, s := range n.cfg.dns.Sites {
			for j, e := range s.Edges {
				target, err := k8sResolve(m, nodes, nodeCall{url: e.Probe, want: []string{"admin"}})
				if err == nil && (target.cfg.cmd != "edge" || target.cfg.cache.Node.Region != s.Name) {
					t.Errorf("dns sites[%d].edges[%d]: probe %s reaches %s, not an edge of %s", i, j, e.Probe, target.w.name, s.Name)
				}
			}
		}
	}
}

// k8sResolve finds the node a URL reaches: "svc", "svc.ns", "svc.ns.svc",
// "svc.ns.svc.cluster.local", or "pod.headless-svc" for a StatefulSet pod.
func k8sResolve(m *k8sManifests, nodes []*k8sNode, c nodeCall) (*k8sNode, error) {
	host, port, err := hostPort(c.url)
	if err != nil {
		return nil, err
	}
	labels := strings.Split(host, ".")
	trim := func(ls []string) []string {
		for _, suffix := range [][]string{{k8sNamespace, "svc", "cluster", "local"}, {k8sNamespace, "svc"}, {k8sNamespace}} {
			if len(ls) > len(suffix) && slices.Equal(ls[len(ls)-len(suffix):], suffix) {
				return ls[:len(ls)-len(suffix)]
			}
		}
		return ls
	}
	labels = trim(labels)
	var pod string
	switch len(labels) {
	case 1:
	case 2:
		pod = labels[0]
		labels = labels[1:]
	default:
		return nil, fmt.Errorf("%s is not a Service or StatefulSet pod name in namespace %s", host, k8sNamespace)
	}
	svc := m.services[labels[0]]
	if svc == nil {
		return nil, fmt.Errorf("no Service %s", labels[0])
	}
	if pod != "" {
		if svc.Spec.ClusterIP != "None" {
			return nil, fmt.Errorf("%s: pod names need a headless Service, %s is not", host, labels[0])
		}
		ok := false
		for _, n := range nodes {
			if n.w.sts != nil && n.w.sts.Spec.ServiceName == svc.Metadata.Name {
				for i := 0; i < n.w.replicas; i++ {
					ok = ok || pod == fmt.Sprintf("%s-%d", n.w.name, i)
				}
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: no pod %s behind %s (replicas?)", host, pod, labels[0])
		}
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != port || (p.Protocol != "" && p.Protocol != "TCP") {
			continue
		}
		for _, n := range nodes {
			if !selects(svc.Spec.Selector, n.w.template.Metadata.Labels) {
				continue
			}
			cp, ok := containerPort(n.c, p.TargetPort, "TCP")
			if !ok {
				continue
			}
			for role, lp := range n.ports {
				if lp == cp {
					if !slices.Contains(c.want, role) {
						return nil, fmt.Errorf("reaches the %s listener of %s, want %v", role, n.w.name, c.want)
					}
					return n, nil
				}
			}
		}
		return nil, fmt.Errorf("Service %s port %d reaches no listener", svc.Metadata.Name, port)
	}
	return nil, fmt.Errorf("Service %s has no TCP port %d (ports: %v)", svc.Metadata.Name, port, slices.Collect(maps.Keys(portsOf(svc))))
}

func portsOf(s *k8sService) map[int]bool {
	out := map[int]bool{}
	for _, p := range s.Spec.Ports {
		out[p.Port] = true
	}
	return out
}
