"""Policy of the rendered Kubernetes manifests (schemas are kubernetes-validate's job).

What a reviewer would check by hand on every change: probes, limits, a locked-down security
context, selectors that select something, autoscaling only where state allows it, a network
policy that keeps settlement private, and no Secret objects in the kustomizations.
"""

from __future__ import annotations

from typing import Any

from .support import Rendering

PROBES = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
# The provider stays in rotation through a settlement outage: its INTENT path does not need it.
PROVIDER_READINESS = "/readyz?settlement=optional"


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    assert not selector.get("matchExpressions"), "keep selectors to matchLabels"
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _pod_labels(rendering: Rendering) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", template["metadata"].get("labels") or {})
        for doc, template in rendering.workloads()
    ]


def test_every_overlay_has_the_whole_suite(rendering: Rendering) -> None:
    for kind, name in [
        ("Deployment", "pact-provider"),
        ("Deployment", "pact-settlement"),
        ("Job", "pact-settlement-migrate"),
        ("Service", "pact-provider"),
        ("Service", "pact-settlement"),
        ("HorizontalPodAutoscaler", "pact-provider"),
        ("PodDisruptionBudget", "pact-provider"),
        ("PodDisruptionBudget", "pact-settlement"),
        ("NetworkPolicy", "pact-settlement-ingress"),
        ("Ingress", "pact"),
    ]:
        rendering.get(kind, name)


def test_no_secret_objects_are_rendered(rendering: Rendering) -> None:
    assert not rendering.of_kind("Secret"), "Secrets are referenced by name, never generated"


def test_containers_are_locked_down(rendering: Rendering) -> None:
    for container in rendering.containers():
        pod = container.pod_spec.get("securityContext") or {}
        own = container.spec.get("securityContext") or {}
        where = container.where
        assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
        assert (own.get("runAsUser") or pod.get("runAsUser") or 0) > 0, where
        assert own.get("readOnlyRootFilesystem") is True, where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        seccomp = own.get("seccompProfile") or pod.get("seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", where
        assert container.pod_spec.get("automountServiceAccountToken") is False, where
        resources = container.spec.get("resources") or {}
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound) or {}), f"{where}: {bound}"
        if container.image.startswith("pact-") or "/pact-" in container.image:
            assert container.spec.get("imagePullPolicy") == "IfNotPresent", where
            assert ":" in container.image.rsplit("/", 1)[-1], f"{where}: untagged image"
            assert not container.image.endswith(":latest"), where


def test_services_have_probes_and_graceful_termination(rendering: Rendering) -> None:
    for name, port in [("pact-provider", 8000), ("pact-settlement", 8001)]:
        deployment = rendering.get("Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        for probe, path in PROBES.items():
            get = container[probe]["httpGet"]
            if name == "pact-provider" and probe == "readinessProbe":
                path = PROVIDER_READINESS
            assert get["path"] == path, f"{name}: {probe}"
            assert get["port"] in ("http", port), f"{name}: {probe}"
        assert container["ports"][0]["containerPort"] == port
        assert container["lifecycle"]["preStop"], f"{name}: no preStop drain"
        grace = pod["terminationGracePeriodSeconds"]
        assert 15 <= grace <= 120, f"{name}: terminationGracePeriodSeconds={grace}"
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, f"{name}: a rollout must not drop capacity"


def test_provider_scales_with_an_hpa_and_settlement_does_not(rendering: Rendering) -> None:
    hpas = rendering.of_kind("HorizontalPodAutoscaler")
    assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["pact-provider"]
    hpa = hpas[0]["spec"]
    assert hpa["scaleTargetRef"]["kind"] == "Deployment"
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    provider = rendering.get("Deployment", "pact-provider")
    assert "replicas" not in provider["spec"], "the HPA owns the provider's replica count"
    settlement = rendering.get("Deployment", "pact-settlement")
    assert settlement["spec"]["replicas"] >= 2


def test_selectors_select_the_right_pods(rendering: Rendering) -> None:
    pods = _pod_labels(rendering)
    for doc in rendering.of_kind("Deployment") + rendering.of_kind("StatefulSet"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert _matches(doc["spec"]["selector"], labels), doc["metadata"]["name"]
    for service in rendering.of_kind("Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        chosen = [name for name, labels in pods if _matches(selector, labels)]
        assert len(chosen) == 1, f"Service {service['metadata']['name']} selects {chosen}"
        assert not chosen[0].startswith("Job/"), "a Service must not select the migration Job"
    for pdb in rendering.of_kind("PodDisruptionBudget"):
        chosen = [name for name, labels in pods if _matches(pdb["spec"]["selector"], labels)]
        assert chosen == [f"Deployment/{pdb['metadata']['name']}"], chosen


def test_only_the_provider_and_the_ingress_controller_reach_settlement(
    rendering: Rendering,
) -> None:
    policy = rendering.get("NetworkPolicy", "pact-settlement-ingress")["spec"]
    pods = dict(_pod_labels(rendering))
    assert _matches(policy["podSelector"], pods["Deployment/pact-settlement"])
    assert not _matches(policy["podSelector"], pods["Deployment/pact-provider"])
    assert policy["policyTypes"] == ["Ingress"]
    peers = [peer for rule in policy["ingress"] for peer in rule["from"]]
    pod_peers = [p for p in peers if "podSelector" in p and "namespaceSelector" not in p]
    ns_peers = [p for p in peers if "namespaceSelector" in p]
    assert len(pod_peers) + len(ns_peers) == len(peers), "no ipBlock peers"
    allowed = [
        n
        for n, labels in pods.items()
        if any(_matches(p["podSelector"], labels) for p in pod_peers)
    ]
    assert allowed == ["Deployment/pact-provider"], allowed
    assert len(ns_peers) == 1, "exactly one namespace (the ingress controller's) is allowed"
    assert "podSelector" not in ns_peers[0] or ns_peers[0]["podSelector"]
    for rule in policy["ingress"]:
        assert [p["port"] for p in rule["ports"]] == [8001]


def test_ingress_exposes_only_the_public_routes(rendering: Rendering) -> None:
    routes = set()
    for name in ("pact", "pact-challenges"):
        ingress = rendering.get("Ingress", name)["spec"]
        assert ingress["tls"], "TLS terminates at the ingress"
        assert ingress["rules"][0]["host"] == "pact.example.com"
        routes |= {
            (path["path"], path["pathType"], path["backend"]["service"]["name"])
            for rule in ingress["rules"]
            for path in rule["http"]["paths"]
        }
    # Never /v1/settlements itself, the accounts or the admin API: only the provider reaches them.
    assert routes == {
        ("/pact", "Exact", "pact-provider"),
        ("/v1/webhooks/stripe", "Exact", "pact-settlement"),
        ("/.well-known/pact-settlement", "Exact", "pact-settlement"),
        ("/v1/settlements/[^/]+/challenge$", "ImplementationSpecific", "pact-settlement"),
    }
    challenges = rendering.get("Ingress", "pact-challenges")["metadata"]["annotations"]
    assert challenges["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert "nginx.ingress.kubernetes.io/limit-rps" in challenges


def test_configmaps_are_hashed_and_mounted(rendering: Rendering) -> None:
    names = [c["metadata"]["name"] for c in rendering.of_kind("ConfigMap")]
    for base in ("pact-provider-config", "pact-settlement-config", "pact-price-book"):
        (name,) = [n for n in names if n.startswith(base + "-")]
        assert len(name) > len(base) + 5, "generated ConfigMaps carry a content hash"
    provider = rendering.get("Deployment", "pact-provider")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in provider["volumes"]}
    assert volumes["price-book"]["configMap"]["name"].startswith("pact-price-book-")


def test_migration_job_runs_migrate_once(rendering: Rendering) -> None:
    job = rendering.get("Job", "pact-settlement-migrate")["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["command"] == ["pact-settlement", "migrate"]
    assert job["backoffLimit"] <= 6
    assert job["activeDeadlineSeconds"] > 0


def test_production_runs_in_a_restricted_namespace(renderings: dict[str, Rendering]) -> None:
    for overlay in ("overlays/production", "overlays/self-hosted"):
        rendering = renderings[overlay]
        namespace = rendering.get("Namespace", "pact")
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        for doc in rendering.docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace") == "pact", doc["metadata"]["name"]
        for container in rendering.containers():
            if container.service:
                assert container.image.startswith("registry.example.com/"), container.where


def test_self_hosted_adds_a_private_postgres(renderings: dict[str, Rendering]) -> None:
    assert not renderings["overlays/production"].of_kind("StatefulSet")
    rendering = renderings["overlays/self-hosted"]
    (statefulset,) = rendering.of_kind("StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"], "data on a PersistentVolumeClaim"
    policy = rendering.get("NetworkPolicy", "pact-postgres-ingress")["spec"]
    pods = dict(_pod_labels(rendering))
    peers = [p["podSelector"] for rule in policy["ingress"] for p in rule["from"]]
    allowed = sorted(n for n, labels in pods.items() if any(_matches(p, labels) for p in peers))
    assert allowed == ["Deployment/pact-settlement", "Job/pact-settlement-migrate"]


def test_the_self_hosted_quote_store_serves_the_providers_only(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["overlays/self-hosted"]
    rendering.get("Deployment", "pact-quote-store")
    policy = rendering.get("NetworkPolicy", "pact-quote-store-ingress")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pact-provider"}}}
    ]
    provider = rendering.get("Deployment", "pact-provider")
    (container,) = provider["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["PACT_PROVIDER_QUOTE_STORE_URL"] == "redis://pact-quote-store:6379/0"
    production = renderings["overlays/production"]
    assert not [
        d for d in production.of_kind("Deployment") if "quote-store" in d["metadata"]["name"]
    ]
