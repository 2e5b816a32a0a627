"""Running the jobs on Ray clusters: KubeRay manifests, CRD validation, pre-flight checks
and a self-started local cluster."""
